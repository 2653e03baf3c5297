//! The book's page on the common crate (book/src/common.md) is its public
//! API on one page, for students doing the exercises. A page like that
//! drifts as soon as a signature changes, so these tests hold it to the
//! sources: every signature it writes out exists, and every public item of
//! `common` is on it.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

fn page() -> String {
    fs::read_to_string(root().join("book/src/common.md")).expect("book/src/common.md")
}

/// The sources of `common`, each without its test module.
fn sources() -> Vec<(String, String)> {
    let mut found = Vec::new();
    let dir = root().join("common/src");
    for entry in fs::read_dir(&dir).expect("common/src").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            let text = fs::read_to_string(&path).unwrap();
            let code = match text.find("#[cfg(test)]") {
                Some(tests) => text[..tests].to_owned(),
                None => text,
            };
            found.push((path.display().to_string(), code));
        }
    }
    assert!(!found.is_empty(), "no sources in {}", dir.display());
    found
}

/// One line of code however rustfmt broke it: whitespace collapsed, and no
/// space or trailing comma inside brackets, so a signature split over
/// lines (`fn f(\n    a: A,\n) -> R`) reads as written on one (`fn f(a: A)
/// -> R`).
fn normalise(code: &str) -> String {
    let spaced = code.split_whitespace().collect::<Vec<_>>().join(" ");
    spaced
        .replace("( ", "(")
        .replace(" )", ")")
        .replace(",)", ")")
}

/// The inline code spans (`like this`) of a Markdown text, outside fenced
/// blocks.
fn inline_code(markdown: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        spans.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
    }
    spans
}

/// The names of `common`'s public functions, constants and types (not
/// `pub(crate)` ones), from the start of their declarations.
fn public_items(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in code.lines() {
        let line = line.trim_start();
        for keyword in [
            "pub fn ",
            "pub const ",
            "pub static ",
            "pub struct ",
            "pub enum ",
            "pub type ",
        ] {
            if let Some(rest) = line.strip_prefix(keyword) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
            }
        }
    }
    names
}

/// Every signature the page writes out (`pub fn ...`, `pub const ...`,
/// `pub type ...`) is in common's sources, word for word.
#[test]
fn the_common_page_quotes_real_signatures() {
    let sources = normalise(
        &sources()
            .into_iter()
            .map(|(_, code)| code)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let quoted: Vec<String> = inline_code(&page())
        .into_iter()
        .filter(|span| {
            ["pub fn ", "pub const ", "pub type "]
                .iter()
                .any(|k| span.starts_with(k))
        })
        .collect();
    assert!(
        quoted.len() >= 20,
        "only {} signatures on the page",
        quoted.len()
    );
    let missing: Vec<&String> = quoted
        .iter()
        .filter(|signature| !sources.contains(&normalise(signature)))
        .collect();
    assert!(
        missing.is_empty(),
        "book/src/common.md quotes signatures that common/src does not have \
         (changed or gone?): {missing:#?}"
    );
}

/// Every public function, constant and type of `common` is named on the
/// page (in backticks, or as `name(`), so a new one gets documented there.
#[test]
fn every_public_item_of_common_is_on_its_page() {
    let page = page();
    let mut missing = Vec::new();
    for (path, code) in sources() {
        for name in public_items(&code) {
            let named = page.contains(&format!("`{name}`"))
                || page.contains(&format!("{name}("))
                || page.contains(&format!(" {name}:"))
                || page.contains(&format!("`{name} "));
            if !named {
                missing.push(format!("{name} ({path})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "public items of common not on book/src/common.md: {missing:?}"
    );
}
