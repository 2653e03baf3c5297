//! The book's promises, checked:
//! - its listings: every `{{#include}}` names a file and an anchor that
//!   exist (mdBook only warns when an anchor is missing), no Rust block is
//!   pasted text, and the diffs the book shows are the diffs of today's
//!   sources;
//! - its order: no chapter shows code from a step a later chapter teaches;
//! - its citations: every test (and function) named in backticks exists;
//! - its pictures: each exists, works offline, and is drawn by a real
//!   browser (headless Chromium) in the built book;
//! - its strace walkthrough: the traces are what book/gen-strace.sh makes
//!   of today's servers, and the notes name the calls on their lines.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tests::tools::{TempDir, output_within, runs_or_skip};

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

// ---------------------------------------------------------------------------
// Reading order: no listing before the chapter that teaches its code.

/// The pages of SUMMARY.md in reading order: the introduction and the
/// numbered chapters (`tutorial`), then the unnumbered pages after them
/// (`reference`: the exercises, the common crate's API, the glossary...),
/// which a reader consults at any point and which may show anything.
struct Summary {
    tutorial: Vec<String>,
    reference: Vec<String>,
}

fn summary() -> Summary {
    let text = fs::read_to_string(root().join("book/src/SUMMARY.md")).expect("SUMMARY.md");
    let mut summary = Summary {
        tutorial: Vec::new(),
        reference: Vec::new(),
    };
    let mut numbered_seen = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let Some((_, after)) = trimmed.split_once("](") else {
            continue;
        };
        let file = after.split(')').next().unwrap_or_default().to_owned();
        if file.is_empty() {
            continue; // a draft chapter, `[Title]()`
        }
        if trimmed.starts_with("- ") || trimmed.starts_with("* ") {
            numbered_seen = true;
            summary.tutorial.push(file);
        } else if numbered_seen {
            summary.reference.push(file);
        } else {
            summary.tutorial.push(file); // the introduction
        }
    }
    assert!(
        summary.tutorial.len() > 5,
        "SUMMARY.md lists too few chapters: {:?}",
        summary.tutorial
    );
    summary
}

/// The file of `common` each chapter explains: `common` is shared by every
/// step and taught in pieces, so no chapter teaches it whole. A tutorial
/// chapter may include a file of `common` only from the chapter named here
/// on. (The reference page on the common crate may show any of it.)
const COMMON_TEACHERS: &[(&str, &str)] = &[
    ("common/src/listen.rs", "backlog.md"),
    ("common/src/output.rs", "watch-fds.md"),
];

/// What a chapter's `{{#include}}` needs the reader to have met.
#[derive(Debug, PartialEq)]
enum Needs {
    /// A workspace crate's code.
    Crate(String),
    /// One file of the shared `common` crate.
    CommonFile(String),
}

/// The workspace crate whose directory starts with `prefix` and `_`
/// (`example03` is `example03_epoll_level`).
fn crate_named(prefix: &str) -> Option<String> {
    fs::read_dir(root())
        .expect("the workspace root")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with(&format!("{prefix}_")))
}

/// What an include needs, from its path: a crate's source
/// (`../../CRATE/...`), a diff between two steps
/// (`diffs/exampleAA_to_exampleBB.diff`), a trace of a step
/// (`strace/exampleNN...`), or nothing (`results/`: measurements).
fn needs_of(include: &str) -> Result<Vec<Needs>, String> {
    let path = include.split(':').next().unwrap_or_default();
    if let Some(rest) = path.strip_prefix("../../") {
        let (krate, _) = rest.split_once('/').ok_or("no crate in the path")?;
        return Ok(vec![if krate == "common" {
            Needs::CommonFile(rest.to_owned())
        } else {
            Needs::Crate(krate.to_owned())
        }]);
    }
    let steps = |names: &[&str]| {
        names
            .iter()
            .map(|step| crate_named(step).map(Needs::Crate))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("no crate for a step named in {path}"))
    };
    if let Some(name) = path.strip_prefix("diffs/") {
        let name = name.strip_suffix(".diff").ok_or("a diff ends in .diff")?;
        let (from, to) = name.split_once("_to_").ok_or("diffs are FROM_to_TO.diff")?;
        return steps(&[from, to]);
    }
    if let Some(name) = path.strip_prefix("strace/") {
        return steps(&[name.get(..9).ok_or("strace/exampleNN...")?]);
    }
    if path.starts_with("results/") {
        return Ok(Vec::new());
    }
    Err("an include this test cannot place: teach needs_of about it".to_owned())
}

/// Which chapter teaches each program, as the introduction's table of the
/// programs says (`| 3 | `example03_epoll_level` | [...](epoll-level.md) |`).
fn teachers_of_programs() -> Vec<(String, String)> {
    let text =
        fs::read_to_string(root().join("book/src/introduction.md")).expect("introduction.md");
    let mut teachers = Vec::new();
    for line in text.lines().filter(|line| line.starts_with('|')) {
        let krate = code_spans(line)
            .into_iter()
            .find(|span| root().join(span).join("Cargo.toml").is_file());
        let chapter = line
            .split_once("](")
            .and_then(|(_, after)| after.split(')').next());
        if let (Some(krate), Some(chapter)) = (krate, chapter) {
            teachers.push((krate.to_owned(), chapter.to_owned()));
        }
    }
    teachers
}

/// The book can be read in order: each chapter's listings (its
/// `{{#include}}`s) show only code the reader has been taught. A program
/// (a workspace crate) is *taught* by the chapter that the introduction's
/// table of programs gives for it, and that chapter must show its
/// `src/main.rs`; from there on, any chapter may include its files, its
/// diffs and its traces. A file of `common`, which no chapter teaches
/// whole, is taught by the chapter [`COMMON_TEACHERS`] names. The
/// unnumbered reference pages at the end of SUMMARY.md are exempt. A
/// chapter may still *link* forward ("the event loop chapter shows..."):
/// only listings are checked.
#[test]
fn chapters_include_only_what_earlier_chapters_taught() {
    let Summary {
        tutorial,
        reference,
    } = summary();
    let text_of = |chapter: &str| {
        fs::read_to_string(root().join("book/src").join(chapter))
            .unwrap_or_else(|err| panic!("{chapter} is in SUMMARY.md: {err}"))
    };
    let texts: Vec<String> = tutorial.iter().map(|chapter| text_of(chapter)).collect();
    let position = |chapter: &str| tutorial.iter().position(|c| c == chapter);
    let taught = teachers_of_programs();
    assert!(
        taught.len() > 5,
        "the introduction's table of programs has too few rows: {taught:?}"
    );

    let mut problems = Vec::new();
    for (krate, chapter) in &taught {
        let main = format!("../../{krate}/src/main.rs");
        let shows_main = position(chapter).is_some_and(|at| {
            includes(&texts[at])
                .iter()
                .any(|include| include.split(':').next() == Some(main.as_str()))
        });
        if !shows_main {
            problems.push(format!(
                "the introduction says {chapter} teaches {krate}, but {chapter} is not a \
                 chapter of SUMMARY.md that shows {main}"
            ));
        }
    }
    for (file, chapter) in COMMON_TEACHERS {
        if position(chapter).is_none() && !reference.iter().any(|r| r == chapter) {
            problems.push(format!(
                "COMMON_TEACHERS: {chapter} (for {file}) is not in SUMMARY.md"
            ));
        }
    }
    let mut checked = 0;
    for (at, (chapter, text)) in tutorial.iter().zip(&texts).enumerate() {
        for include in includes(text) {
            let needs = match needs_of(include) {
                Ok(needs) => needs,
                Err(why) => {
                    problems.push(format!("{chapter}: {include}: {why}"));
                    continue;
                }
            };
            checked += 1;
            for need in needs {
                let (what, teacher) = match &need {
                    Needs::Crate(krate) => (
                        krate.clone(),
                        taught
                            .iter()
                            .find(|(name, _)| name == krate)
                            .map(|(_, chapter)| chapter.as_str()),
                    ),
                    Needs::CommonFile(file) => (
                        file.clone(),
                        COMMON_TEACHERS
                            .iter()
                            .find(|(f, _)| f == file)
                            .map(|&(_, chapter)| chapter),
                    ),
                };
                match teacher {
                    None => problems.push(format!(
                        "{chapter}: {include} shows {what}, which no chapter teaches \
                         (add it to the introduction's table of programs, or, for \
                         common/, to COMMON_TEACHERS)"
                    )),
                    Some(teacher) if position(teacher).is_some_and(|t| t > at) => {
                        problems.push(format!(
                            "{chapter}: {include} shows {what} before it is taught, in {teacher}"
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} includes checked: is the book there?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// Names the book cites.

/// Every `.rs` file of the workspace (not `target/`), with its text.
fn rust_sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, found: &mut Vec<(PathBuf, String)>) {
        for entry in fs::read_dir(dir).expect("a readable directory") {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "book" {
                    walk(&path, found);
                }
            } else if name.ends_with(".rs") {
                found.push((
                    path.clone(),
                    fs::read_to_string(&path).expect("UTF-8 source"),
                ));
            }
        }
    }
    let mut found = Vec::new();
    walk(&root(), &mut found);
    found
}

/// The names a source defines: `fn NAME`, `mod NAME`, benchmark groups
/// (`benchmark_group("NAME")`, which the book cites like tests) and the
/// test modules that answers.rs's `servers!` macro makes from its lines
/// `NAME = TARGET: [...]` (the book cites `example08_select::...`).
fn defined_names(source: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = Vec::new();
    for keyword in ["fn ", "mod "] {
        for (at, _) in source.match_indices(keyword) {
            let before = source[..at].chars().next_back();
            if before.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_')) {
                names.push(ident(&source[at + keyword.len()..]));
            }
        }
    }
    for line in source.lines() {
        let line = line.trim_start();
        let name = ident(line);
        let rest = &line[name.len()..];
        if let Some(after) = rest.strip_prefix(" = ") {
            let target = ident(after);
            let constant = !target.is_empty() && !target.contains(|c: char| c.is_ascii_lowercase());
            if constant && after[target.len()..].starts_with(": [") {
                names.push(name);
            }
        }
    }
    // Criterion groups: `benchmark_group("name")`, or a helper's
    // `group(c, "name", ...)`.
    for pattern in ["benchmark_group(\"", "group(c, \""] {
        for (at, _) in source.match_indices(pattern) {
            names.push(ident(&source[at + pattern.len()..]));
        }
    }
    names.retain(|name| !name.is_empty());
    names
}

/// Names in backticks that are not this workspace's: system calls, kernel
/// functions and settings, libc and std names. Each must be one of these,
/// so that a misspelt or renamed test cannot hide among them.
const OUTSIDE_NAMES: &[&str] = &[
    // system calls and kernel functions (wchan)
    "epoll_ctl",
    "epoll_wait",
    "inet_csk_accept",
    "wait_woken",
    "sk_wait_data",
    "tcp_recvmsg",
    "tcp_nagle_check",
    // sysctls under /proc/sys/net/ipv4
    "tcp_abort_on_overflow",
    "tcp_max_syn_backlog",
    "tcp_syn_retries",
    "tcp_synack_retries",
    "tcp_syncookies",
    // fields of struct tcp_info
    "tcpi_data_segs_in",
    "tcpi_data_segs_out",
    "tcpi_total_retrans",
    // C types of the socket API
    "sockaddr_in",
    "sockaddr_storage",
    "fd_set",
    // nix's
    "read_signal",
    // Rust's std
    "peer_addr",
    "set_nonblocking",
    "set_read_timeout",
    "write_all",
    "write_vectored",
    // the Python e3 library's
    "server_fd",
    // Linux's source (fs/eventpoll.c, net/), sysctls and getrusage fields
    "ep_modify",
    "ep_poll",
    "ep_poll_callback",
    "ep_ptable_queue_proc",
    "do_epoll_wait",
    "do_softirq",
    "tcp_wmem",
    "rx_queue",
    "ru_nvcsw",
    "clock_gettime",
    "timerfd_create",
    "timerfd_settime",
    // nginx's directives and functions, libuv's
    "client_body_timeout",
    "client_header_timeout",
    "lingering_close",
    "ngx_event_expire_timers",
    "ngx_event_find_timer",
    "ngx_http_init_connection",
    "ngx_reorder_accept_events",
    "uv__next_timeout",
    // mio's and tokio's source, and their examples
    "interests_to_epoll",
    "is_error",
    "is_read_closed",
    "is_readable",
    "is_writable",
    "is_write_closed",
    "poll_schedule_timeout",
    "tcp_server",
    "assume_ready",
    "async_io",
    "block_on",
    "dispatch_event",
    "event_interval",
    "new_accepted",
    "park_yield",
    "poll_read",
    "register_with_interest",
    "with_interest",
    // std's
    "size_of_val",
    "try_clone",
];

/// The code spans (`...`) of a Markdown text, outside fenced code blocks.
fn code_spans(text: &str) -> Vec<&str> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    let mut spans = Vec::new();
    for (i, part) in prose.split('`').enumerate() {
        if i % 2 == 1 {
            // Borrow from `text` rather than the local copy.
            if let Some(at) = text.find(part) {
                spans.push(&text[at..at + part.len()]);
            }
        }
    }
    spans
}

/// Every snake_case name the book shows in backticks (a test it cites, like
/// `a_silent_client_stalls_the_blocking_loop`, or a function of the code)
/// is defined in the workspace as a `fn` or a benchmark group, or is a
/// crate's name, or is one of the [`OUTSIDE_NAMES`]. A test renamed or
/// removed without the book following fails here.
#[test]
fn every_name_the_book_cites_exists() {
    let sources = rust_sources();
    let defined: std::collections::HashSet<String> = sources
        .iter()
        .flat_map(|(_, source)| defined_names(source))
        .collect();
    assert!(
        defined.contains("a_silent_client_stalls_the_blocking_loop"),
        "the scan of tests/ found no lesson test: is it looking in the right place?"
    );
    let mut problems = Vec::new();
    let mut cited = 0;
    for (chapter, text) in chapters() {
        for span in code_spans(&text) {
            for name in span.split("::") {
                let snake = name.contains('_')
                    && name.starts_with(|c: char| c.is_ascii_lowercase())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !snake {
                    continue;
                }
                cited += 1;
                let known = defined.contains(name)
                    || OUTSIDE_NAMES.contains(&name)
                    || root().join(name).join("Cargo.toml").is_file();
                if !known {
                    let chapter = chapter.strip_prefix(root()).unwrap_or(&chapter);
                    problems.push(format!(
                        "{}: `{name}` is defined nowhere",
                        chapter.display()
                    ));
                }
            }
        }
    }
    assert!(cited > 50, "only {cited} names found in backticks");
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// Pictures.

/// The targets of a chapter's images: `![alt](path)` and `<img src="path">`,
/// with their alt text (empty for `<img>`, whose alt is not parsed).
fn images(text: &str) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("![") {
        let after = &rest[start + 2..];
        let Some((alt, tail)) = after.split_once("](") else {
            break;
        };
        let target = tail.split(')').next().unwrap_or_default();
        found.push((alt, target));
        rest = tail;
    }
    for (at, pattern) in text.match_indices("<img src=\"") {
        let tail = &text[at + pattern.len()..];
        found.push(("", tail.split('"').next().unwrap_or_default()));
    }
    found
}

/// Every picture a chapter shows exists, has alt text, and is an SVG that
/// needs nothing from the network (the book is read offline: no external
/// `href`, `url()` or script); every SVG in book/src/img is shown somewhere;
/// and the book has at least 14 pictures.
#[test]
fn every_picture_exists_is_offline_and_is_shown() {
    let mut problems = Vec::new();
    let mut shown = std::collections::BTreeSet::new();
    for (chapter, text) in chapters() {
        let dir = chapter.parent().expect("a chapter has a directory");
        for (alt, target) in images(&text) {
            let path = dir.join(target);
            let name = chapter.file_name().unwrap_or_default().to_string_lossy();
            if target.starts_with("http:") || target.starts_with("https:") {
                problems.push(format!("{name}: {target} is not in the book"));
                continue;
            }
            let Ok(svg) = fs::read_to_string(&path) else {
                problems.push(format!("{name}: no picture {target}"));
                continue;
            };
            if alt.trim().is_empty() && text.contains(&format!("]({target})")) {
                problems.push(format!("{name}: {target} has no alt text"));
            }
            if !target.ends_with(".svg") || !svg.contains("<svg") {
                problems.push(format!("{name}: {target} is not an SVG"));
            }
            for outside in [
                "href=\"http",
                "href='http",
                "url(http",
                "<script",
                "@import",
            ] {
                if svg.contains(outside) {
                    problems.push(format!("{name}: {target} has `{outside}`: not offline"));
                }
            }
            shown.insert(path.canonicalize().unwrap_or(path));
        }
    }
    for entry in fs::read_dir(root().join("book/src/img")).expect("book/src/img") {
        let path = entry.expect("entry").path();
        let path = path.canonicalize().unwrap_or(path);
        if !shown.contains(&path) {
            problems.push(format!("{} is shown by no chapter", path.display()));
        }
    }
    assert!(
        shown.len() >= 14,
        "the book shows {} pictures, fewer than 14: {shown:?}",
        shown.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// One request under strace.

/// The names of the files in `dir`, sorted.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// book/src/strace holds what book/gen-strace.sh makes of today's servers:
/// the system calls of one request to examples 3 and 4, normalised. If this
/// fails, run `book/gen-strace.sh`, read what changed, check the line
/// numbers that the notes in book/src/strace.md give, and commit. Needs
/// strace and curl; without them it skips, except under CI.
#[test]
fn the_book_shows_todays_strace() {
    let strace_works = runs_or_skip(
        "strace",
        &["-o", "/dev/null", "true"],
        "the strace walkthrough test",
        "apt-get install -y strace (and a kernel that lets a process trace its child)",
    );
    let curl_works = strace_works
        && runs_or_skip(
            "curl",
            &["--version"],
            "the strace walkthrough test",
            "apt-get install -y curl",
        );
    if !curl_works {
        return;
    }
    // The script takes the servers the tests built, rather than building
    // its own.
    let example03 = tests::binary("example03_epoll_level");
    let example04 = tests::binary("example04_epoll_edge");
    let bin_dir = example03.parent().expect("a binary has a directory");
    assert_eq!(
        example04.parent(),
        Some(bin_dir),
        "both servers in one directory"
    );

    let fresh = TempDir::new("book-strace");
    let output = output_within(
        Command::new(root().join("book/gen-strace.sh"))
            .arg(fresh.path())
            .env("BIN_DIR", bin_dir),
        Duration::from_secs(120),
    );
    assert!(
        output.status.success(),
        "book/gen-strace.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let committed_dir = root().join("book/src/strace");
    let expected = file_names(fresh.path());
    assert_eq!(
        file_names(&committed_dir),
        expected,
        "book/src/strace holds other files than book/gen-strace.sh writes"
    );
    let mut stale = Vec::new();
    for name in &expected {
        let now = fs::read_to_string(fresh.path().join(name)).expect("a fresh trace");
        let committed = fs::read_to_string(committed_dir.join(name)).expect("a committed trace");
        if now != committed {
            let first = now
                .lines()
                .zip(committed.lines())
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("\n  now:       {a}\n  committed: {b}"))
                .unwrap_or_else(|| "\n  (one is longer)".to_owned());
            stale.push(format!("{name}:{first}"));
        }
    }
    assert!(
        stale.is_empty(),
        "stale traces in book/src/strace (run book/gen-strace.sh, check the \
         notes' line numbers in strace.md, and commit):\n{}",
        stale.join("\n")
    );
}

/// The notes under each trace in book/src/strace.md give the line they
/// explain by number and name its call (`- **6** `recvfrom`: ...`). Each
/// must name the call that is on that line of the trace included just
/// above it, so that a regenerated trace cannot leave its notes pointing
/// at the wrong lines.
#[test]
fn the_strace_notes_name_the_calls_on_their_lines() {
    let chapter = fs::read_to_string(root().join("book/src/strace.md")).expect("strace.md");
    let mut trace: Option<(String, Vec<String>)> = None;
    let mut problems = Vec::new();
    let mut notes = 0;
    for line in chapter.lines() {
        if let Some(include) = includes(line).first()
            && include.starts_with("strace/")
            && include.ends_with(".txt")
        {
            let text = fs::read_to_string(root().join("book/src").join(include))
                .unwrap_or_else(|err| panic!("{include}: {err}"));
            trace = Some((
                include.to_string(),
                text.lines().map(str::to_owned).collect(),
            ));
            continue;
        }
        let Some(note) = line.strip_prefix("- **") else {
            continue;
        };
        let Some((number, rest)) = note.split_once("** `") else {
            continue;
        };
        let Ok(number) = number.parse::<usize>() else {
            continue;
        };
        let call: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        notes += 1;
        let Some((file, lines)) = &trace else {
            problems.push(format!("note {number} (`{call}`) comes before any trace"));
            continue;
        };
        let traced = lines.get(number.wrapping_sub(1)).map(|l| l.trim_start());
        let expected_start = format!("{number}  {call}(");
        if !traced.is_some_and(|l| l.starts_with(&expected_start)) {
            problems.push(format!(
                "note {number} names `{call}`, but line {number} of {file} is: {}",
                traced.unwrap_or("(no such line)")
            ));
        }
    }
    assert!(notes >= 15, "only {notes} notes found in strace.md");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------
// The pictures, as a browser shows them.

/// Three chapters with diagrams, checked in the built book.
const RENDERED_CHAPTERS: &[&str] = &["tcp", "epoll-level", "event-loop"];

/// The script added to a copy of a built chapter: once the page has
/// loaded, it writes one line per image into a hidden `<pre>`, for
/// `--dump-dom` to print: its `src`, whether it loaded, its natural size
/// (0 for an image the browser could not decode: a broken image), and
/// where it is drawn on the page, in CSS pixels.
const IMAGE_PROBE: &str = r#"<pre id="image-probe" style="display:none"></pre>
<script>
window.addEventListener("load", () => {
  const lines = [...document.querySelectorAll("main img")].map((img) => {
    const r = img.getBoundingClientRect();
    return [img.getAttribute("src"), img.complete, img.naturalWidth, img.naturalHeight,
      Math.round(r.left + window.scrollX), Math.round(r.top + window.scrollY),
      Math.round(r.width), Math.round(r.height)].join(" ");
  });
  document.getElementById("image-probe").textContent = "probe\n" + lines.join("\n");
});
</script>
</body>"#;

/// One image as the probe saw it.
#[derive(Debug)]
struct Drawn {
    src: String,
    natural_width: u32,
    left: u32,
    top: u32,
    width: u32,
    height: u32,
}

fn parse_probe(dom: &str) -> Option<Vec<Drawn>> {
    let start = dom.find("<pre id=\"image-probe\"")?;
    let body = &dom[start..];
    let body = &body[body.find('>')? + 1..body.find("</pre>")?];
    let mut lines = body.lines();
    if lines.next() != Some("probe") {
        return None; // the script did not run
    }
    let number = |field: Option<&str>| -> u32 {
        field
            .and_then(|f| f.parse::<i64>().ok())
            .map_or(0, |n| n.max(0) as u32)
    };
    Some(
        lines
            .map(|line| {
                let mut fields = line.split(' ');
                let src = fields.next().unwrap_or_default().to_owned();
                let _complete = fields.next();
                let natural_width = number(fields.next());
                let _natural_height = fields.next();
                Drawn {
                    src,
                    natural_width,
                    left: number(fields.next()),
                    top: number(fields.next()),
                    width: number(fields.next()),
                    height: number(fields.next()),
                }
            })
            .collect(),
    )
}

/// An RGB screenshot.
struct Screenshot {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

fn read_png(path: &Path) -> Screenshot {
    let file = fs::File::open(path).expect("the screenshot");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut buffer = vec![
        0;
        reader
            .output_buffer_size()
            .expect("a PNG that fits in memory")
    ];
    let info = reader.next_frame(&mut buffer).expect("a PNG frame");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("a screenshot in {other:?}"),
    };
    let rgb = buffer[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    Screenshot {
        width: info.width,
        height: info.height,
        rgb,
    }
}

/// In the screenshot's rectangle where an image is drawn: the share of
/// pixels that are ink (clearly darker than the page's white: lines and
/// text), and how many distinct colours there are (in steps of 32).
fn ink_in(shot: &Screenshot, image: &Drawn) -> (f64, usize) {
    let right = (image.left + image.width).min(shot.width);
    let bottom = (image.top + image.height).min(shot.height);
    let mut ink = 0usize;
    let mut total = 0usize;
    let mut colours = std::collections::HashSet::new();
    for y in image.top..bottom {
        for x in image.left..right {
            let [r, g, b] = shot.rgb[(y * shot.width + x) as usize];
            let luma = (299 * r as u32 + 587 * g as u32 + 114 * b as u32) / 1000;
            ink += usize::from(luma < 160);
            total += 1;
            colours.insert([r / 32, g / 32, b / 32]);
        }
    }
    (ink as f64 / total.max(1) as f64, colours.len())
}

/// Built with mdbook and shown by headless Chromium, three chapters draw
/// every picture they link: each image loads (a broken one has a natural
/// width of 0) and, in a screenshot of the page, the rectangle where it is
/// drawn holds lines and text, not a blank. Needs mdbook and chromium;
/// without them it skips, except under CI.
#[test]
fn three_chapters_draw_their_pictures_in_a_browser() {
    let Some(browser) = tests::browser::chromium() else {
        return;
    };
    if !runs_or_skip(
        "mdbook",
        &["--version"],
        "the rendered-book test",
        "cargo install mdbook --locked --version 0.5.4",
    ) {
        return;
    }
    let out = TempDir::new("book-rendered");
    let build = output_within(
        Command::new("mdbook")
            .arg("build")
            .arg(root().join("book"))
            .arg("--dest-dir")
            .arg(out.path()),
        Duration::from_secs(120),
    );
    assert!(
        build.status.success(),
        "mdbook build failed: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    // With more than one renderer (linkcheck2), each writes a subdirectory.
    let html = if out.path().join("html/index.html").is_file() {
        out.path().join("html")
    } else {
        out.path().to_path_buf()
    };

    let problems: Vec<String> = std::thread::scope(|scope| {
        let checks: Vec<_> = RENDERED_CHAPTERS
            .iter()
            .map(|&chapter| scope.spawn(|| check_rendered(browser, &html, chapter)))
            .collect();
        checks
            .into_iter()
            .flat_map(|check| check.join().expect("a chapter check panicked"))
            .collect()
    });
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The problems with the pictures of one built chapter (`chapter.html`).
fn check_rendered(browser: &str, html: &Path, chapter: &str) -> Vec<String> {
    let page = html.join(format!("{chapter}.html"));
    let built = fs::read_to_string(&page).unwrap_or_else(|err| panic!("{chapter}.html: {err}"));
    assert_eq!(
        built.matches("</body>").count(),
        1,
        "{chapter}.html: one </body>"
    );
    let probe = html.join(format!("{chapter}.probe.html"));
    fs::write(&probe, built.replace("</body>", IMAGE_PROBE)).expect("write the probe page");
    // One run prints the DOM (with the probe's report) and takes a
    // screenshot. The hidden report and the script change nothing on the
    // page's layout: the screenshot is of the chapter as built.
    let url = format!("file://{}", probe.display());
    let png = html.join(format!("{chapter}.png"));
    let shot_of = |height: u32| {
        let dom = tests::browser::headless(
            browser,
            &[
                "--hide-scrollbars",
                &format!("--window-size=1000,{height}"),
                "--virtual-time-budget=10000",
                &format!("--screenshot={}", png.display()),
                "--dump-dom",
                &url,
            ],
        );
        (dom, read_png(&png))
    };
    let (dom, mut shot) = shot_of(2000);
    let Some(drawn) = parse_probe(&dom) else {
        return vec![format!("{chapter}: the probe script did not run")];
    };

    let markdown =
        fs::read_to_string(root().join(format!("book/src/{chapter}.md"))).expect("the chapter");
    let linked: Vec<&str> = images(&markdown).into_iter().map(|(_, t)| t).collect();
    let mut problems = Vec::new();
    if linked.is_empty() {
        problems.push(format!("{chapter}: no pictures to check"));
    }
    // The built page may hold a hidden copy of an image as well (size 0):
    // each picture must load wherever it is, and be drawn somewhere.
    let mut pictures: Vec<&Drawn> = Vec::new();
    for target in &linked {
        let copies: Vec<&Drawn> = drawn.iter().filter(|d| d.src == *target).collect();
        if copies.is_empty() {
            problems.push(format!("{chapter}: {target} is not on the built page"));
        } else if let Some(broken) = copies.iter().find(|d| d.natural_width == 0) {
            problems.push(format!("{chapter}: {target} is a broken image: {broken:?}"));
        }
        let shown: Vec<&Drawn> = copies.into_iter().filter(|d| d.width > 0).collect();
        if shown.is_empty() {
            problems.push(format!("{chapter}: {target} is drawn nowhere on the page"));
        }
        pictures.extend(shown);
    }
    if !problems.is_empty() {
        return problems;
    }

    // Again, taller, if a picture lies below the first screenshot.
    let bottom = pictures.iter().map(|p| p.top + p.height).max().unwrap_or(0);
    if bottom > shot.height {
        shot = shot_of(bottom + 20).1;
    }
    for picture in pictures {
        let (ink, colours) = ink_in(&shot, picture);
        if ink < 0.01 || colours < 3 {
            problems.push(format!(
                "{chapter}: {} looks blank in the screenshot: {:.2}% ink, {colours} colours, at {picture:?}",
                picture.src,
                ink * 100.0
            ));
        }
    }
    problems
}
