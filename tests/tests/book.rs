//! The book's promises about its listings, checked: every `{{#include}}`
//! names a file and an anchor that exist (mdBook only warns when an anchor
//! is missing), no Rust block is pasted text, and the diffs the book shows
//! are the diffs of today's sources.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Every Markdown file under book/src, with its text.
fn chapters() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, found: &mut Vec<(PathBuf, String)>) {
        for entry in fs::read_dir(dir).expect("readable book/src") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "md") {
                let text = fs::read_to_string(&path).expect("a UTF-8 chapter");
                found.push((path, text));
            }
        }
    }
    let mut found = Vec::new();
    walk(&root().join("book/src"), &mut found);
    assert!(!found.is_empty(), "no chapters found in book/src");
    found
}

/// The argument of every `{{#include ARG}}` in `text`.
fn includes(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{#include ") {
        let after = &rest[start + "{{#include ".len()..];
        let end = after.find("}}").expect("an {{#include}} without its }}");
        found.push(after[..end].trim());
        rest = &after[end..];
    }
    found
}

/// Each include names an existing file, and its anchor (if any) is a name
/// with both markers in that file. Line numbers are refused: they go stale
/// silently when the source changes.
#[test]
fn every_include_names_an_existing_file_and_anchor() {
    let mut problems = Vec::new();
    let mut count = 0;
    for (chapter, text) in chapters() {
        let dir = chapter.parent().expect("a chapter has a directory");
        for include in includes(&text) {
            count += 1;
            let (file, anchor) = match include.split_once(':') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (include, None),
            };
            let path = dir.join(file);
            let Ok(source) = fs::read_to_string(&path) else {
                problems.push(format!("{}: no file {file}", chapter.display()));
                continue;
            };
            let Some(anchor) = anchor else { continue };
            if anchor.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                problems.push(format!(
                    "{}: {include} uses line numbers; use an ANCHOR",
                    chapter.display()
                ));
                continue;
            }
            let has = |marker: &str| {
                source.lines().any(|line| {
                    line.split_once(marker)
                        .is_some_and(|(_, name)| name.trim() == anchor)
                })
            };
            if !has("ANCHOR:") || !has("ANCHOR_END:") {
                problems.push(format!(
                    "{}: anchor `{anchor}` missing in {file}",
                    chapter.display()
                ));
            }
        }
    }
    assert!(
        count > 20,
        "only {count} includes found: is the book there?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A Rust code block holds nothing but includes (and `// --snip--` lines
/// between them): no listing is a copy.
#[test]
fn no_rust_listing_is_pasted() {
    let mut problems = Vec::new();
    for (chapter, text) in chapters() {
        let mut in_rust = false;
        let mut in_block = false;
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if let Some(info) = trimmed.strip_prefix("```") {
                if in_block {
                    (in_block, in_rust) = (false, false);
                } else {
                    in_block = true;
                    in_rust = info.starts_with("rust");
                    if in_rust && !(info.contains("ignore") || info.contains("noplayground")) {
                        problems.push(format!(
                            "{}:{}: mark Rust blocks `ignore` or `noplayground`",
                            chapter.display(),
                            number + 1
                        ));
                    }
                }
                continue;
            }
            // `// --snip--` marks lines a listing leaves out, as the Rust
            // book does: the one line a chapter may write itself.
            let snip = trimmed == "// --snip--";
            if in_rust && !trimmed.is_empty() && !snip && !trimmed.starts_with("{{#include ") {
                problems.push(format!(
                    "{}:{}: pasted Rust: {line}",
                    chapter.display(),
                    number + 1
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The diffs in book/src/diffs are what book/gen-diffs.sh makes of the
/// sources now. If this fails, run `book/gen-diffs.sh` and commit.
#[test]
fn the_book_shows_todays_diffs() {
    let fresh = std::env::temp_dir().join(format!("book-diffs-{}", std::process::id()));
    let _ = fs::remove_dir_all(&fresh);
    let status = Command::new(root().join("book/gen-diffs.sh"))
        .arg(&fresh)
        .status()
        .expect("book/gen-diffs.sh runs (needs bash and diff)");
    assert!(status.success(), "book/gen-diffs.sh failed");

    let names = |dir: &Path| {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("a diffs directory")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let committed_dir = root().join("book/src/diffs");
    let expected = names(&fresh);
    assert_eq!(
        names(&committed_dir),
        expected,
        "book/src/diffs holds other files than book/gen-diffs.sh writes"
    );
    let mut stale = Vec::new();
    for name in &expected {
        let now = fs::read(fresh.join(name)).expect("a fresh diff");
        let committed = fs::read(committed_dir.join(name)).expect("a committed diff");
        if now != committed {
            stale.push(name.as_str());
        }
    }
    let _ = fs::remove_dir_all(&fresh);
    assert!(
        stale.is_empty(),
        "stale diffs in book/src/diffs: {stale:?}; run book/gen-diffs.sh and commit"
    );
}

/// Every exercise in exercises/info.toml is in the book's table of
/// exercises (book/src/exercises.md), by its checker's name. (The runner's
/// own tests check the rest: directories, checkers, hints, solutions.)
#[test]
fn every_exercise_is_on_the_exercises_page() {
    let info = fs::read_to_string(root().join("exercises/info.toml")).expect("exercises/info.toml");
    let page =
        fs::read_to_string(root().join("book/src/exercises.md")).expect("book/src/exercises.md");
    let checkers: Vec<&str> = info
        .lines()
        .filter_map(|line| line.strip_prefix("checker = "))
        .map(|value| value.trim_matches('"'))
        .collect();
    assert!(!checkers.is_empty(), "no exercises in exercises/info.toml");
    let missing: Vec<&&str> = checkers
        .iter()
        .filter(|name| !page.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in book/src/exercises.md: {missing:?}"
    );
}
