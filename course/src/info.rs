//! The exercises, as `exercises/info.toml` lists them: one file of
//! metadata (like rustlings' `info.toml`), read by `cargo course`,
//! `.ci/exercises` and the tests.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// One exercise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exercise {
    /// Its directory under `exercises/`, `NN_name`: NN follows the book's
    /// order.
    pub name: String,
    /// What the book calls it.
    pub title: String,
    /// The chapter that asks for it (a file in book/src).
    pub chapter: String,
    /// The files a solution edits, from the workspace root.
    pub files: Vec<String>,
    /// The test in tests/tests/exercises.rs that checks it.
    pub checker: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InfoFile {
    format_version: u32,
    #[serde(rename = "exercise")]
    exercises: Vec<Exercise>,
}

/// The course: where the workspace is, and its exercises in book order.
#[derive(Debug)]
pub struct Course {
    pub root: PathBuf,
    pub exercises: Vec<Exercise>,
}

impl Course {
    /// Reads `exercises/info.toml` under `root` and checks what can be
    /// checked without running anything.
    pub fn load(root: &Path) -> anyhow::Result<Course> {
        let path = root.join("exercises/info.toml");
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let info: InfoFile =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        if info.format_version != 1 {
            bail!(
                "{}: format_version {} (this runner reads 1)",
                path.display(),
                info.format_version
            );
        }
        let mut seen = HashSet::new();
        for exercise in &info.exercises {
            if !seen.insert(exercise.name.as_str()) {
                bail!("{}: {} is listed twice", path.display(), exercise.name);
            }
            if exercise.files.is_empty() {
                bail!("{}: {} edits no file", path.display(), exercise.name);
            }
        }
        Ok(Course {
            root: root.to_path_buf(),
            exercises: info.exercises,
        })
    }

    /// The exercise called `name`, or an error that suggests the closest
    /// name.
    pub fn find(&self, name: &str) -> anyhow::Result<&Exercise> {
        if let Some(exercise) = self.exercises.iter().find(|e| e.name == name) {
            return Ok(exercise);
        }
        // `04_keep_alive`, `keep_alive` and `04-keep-alive` all mean one.
        let wanted = normalise(name);
        if let Some(exercise) = self
            .exercises
            .iter()
            .find(|e| normalise(&e.name) == wanted || normalise(short(&e.name)) == wanted)
        {
            return Ok(exercise);
        }
        match self.closest(name) {
            Some(closest) => bail!(
                "no exercise is called `{name}`: did you mean `{closest}`? \
                 (`cargo course list` shows them all)"
            ),
            None => bail!("no exercise is called `{name}` (`cargo course list` shows them all)"),
        }
    }

    /// The exercise name nearest to `name`, by edit distance.
    fn closest(&self, name: &str) -> Option<&str> {
        let wanted = normalise(name);
        self.exercises
            .iter()
            .map(|e| {
                let full = strsim::normalized_levenshtein(&wanted, &normalise(&e.name));
                let bare = strsim::normalized_levenshtein(&wanted, &normalise(short(&e.name)));
                (full.max(bare), e.name.as_str())
            })
            .filter(|(score, _)| *score > 0.3)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, name)| name)
    }

    /// The directory of `exercise`'s hints and solution.
    pub fn dir(&self, exercise: &Exercise) -> PathBuf {
        self.root.join("exercises").join(&exercise.name)
    }
}

/// The name without its number: `keep_alive` for `04_keep_alive`.
pub fn short(name: &str) -> &str {
    name.split_once('_').map_or(name, |(_, rest)| rest)
}

fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace(['-', ' '], "_")
}

/// The hints of an exercise: `exercises/NN_name/hints.md`, one `## ` heading
/// per hint, from mild to nearly the answer.
pub fn hints(dir: &Path) -> anyhow::Result<Vec<String>> {
    let path = dir.join("hints.md");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let hints: Vec<String> = text
        .split("\n## ")
        .skip(1)
        .map(|hint| {
            // Drop the heading's own line ("1", "2: which event?").
            let body = hint.split_once('\n').map_or("", |(_, body)| body);
            body.trim().to_owned()
        })
        .filter(|hint| !hint.is_empty())
        .collect();
    if hints.is_empty() {
        bail!("{} has no `## ` hints", path.display());
    }
    Ok(hints)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chapters with no exercise of their own, and why.
    const NO_EXERCISE: &[(&str, &str)] = &[
        ("introduction.md", "the map of the book"),
        ("tcp.md", "a primer: its commands are the exercise"),
        (
            "strace.md",
            "a walkthrough of one request, read beside the code",
        ),
        (
            "backlog.md",
            "its exercises are measurements with ab and ss",
        ),
        ("errata.md", "a list of divergences, each pinned by a test"),
        ("measuring.md", "the results; its commands reproduce them"),
    ];

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// The chapters of book/src/SUMMARY.md before its `---` (the appendix
    /// pages after it teach no step), in order.
    fn chapters(root: &Path) -> Vec<String> {
        let summary = fs::read_to_string(root.join("book/src/SUMMARY.md")).unwrap();
        summary
            .lines()
            .take_while(|line| line.trim() != "---")
            .filter_map(|line| line.split_once("](")?.1.split_once(')'))
            .map(|(file, _)| file.to_owned())
            .collect()
    }

    /// The workspace's exercises/info.toml is whole: every exercise
    /// directory listed and every listed one present, each with two hints
    /// or more and a solution that edits exactly its `files`, a checker
    /// that exists, a chapter in the book, and the book's order; and every
    /// chapter that teaches a step asks for at least one exercise; the
    /// numbers count the chapters' exercises in book order (two exercises
    /// of one chapter share a number).
    #[test]
    fn the_workspace_exercises_are_listed_whole_and_in_book_order() {
        let root = workspace();
        let course = Course::load(&root).unwrap();
        let checkers = fs::read_to_string(root.join("tests/tests/exercises.rs")).unwrap();
        let chapters = chapters(&root);
        let mut problems = Vec::new();

        let mut on_disk: Vec<String> = fs::read_dir(root.join("exercises"))
            .unwrap()
            .map(|entry| entry.unwrap())
            .filter(|entry| entry.path().is_dir())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = course.exercises.iter().map(|e| e.name.clone()).collect();
        listed.sort();
        if on_disk != listed {
            problems.push(format!(
                "directories {on_disk:?} but info.toml lists {listed:?}"
            ));
        }

        let mut last_chapter = 0;
        // (chapter, number) of the exercise before: numbers follow the
        // chapters, the same within a chapter and one more for the next.
        let mut last: Option<(&str, u32)> = None;
        for exercise in &course.exercises {
            let number: Option<u32> = exercise.name.split('_').next().and_then(|n| n.parse().ok());
            match (number, last) {
                (None, _) => problems.push(format!("{}: no NN_ number", exercise.name)),
                (Some(n), None) if n != 1 => {
                    problems.push(format!(
                        "{}: the first exercise is numbered 01",
                        exercise.name
                    ));
                }
                (Some(n), Some((chapter, m))) => {
                    let want = if chapter == exercise.chapter {
                        m
                    } else {
                        m + 1
                    };
                    if n != want {
                        problems.push(format!(
                            "{}: numbered {n:02}, but the book's order makes it {want:02}",
                            exercise.name
                        ));
                    }
                }
                _ => {}
            }
            if let Some(n) = number {
                last = Some((exercise.chapter.as_str(), n));
            }
            let name = &exercise.name;
            let dir = course.dir(exercise);
            match hints(&dir) {
                Ok(hints) if hints.len() >= 2 => {}
                Ok(_) => problems.push(format!("{name}: fewer than two hints")),
                Err(err) => problems.push(format!("{name}: {err:#}")),
            }
            match fs::read_to_string(dir.join("solution.patch")) {
                Ok(patch) => {
                    let mut edits: Vec<&str> = patch
                        .lines()
                        .filter_map(|line| line.strip_prefix("+++ b/"))
                        .collect();
                    edits.sort_unstable();
                    let mut files: Vec<&str> = exercise.files.iter().map(String::as_str).collect();
                    files.sort_unstable();
                    if edits != files {
                        problems.push(format!(
                            "{name}: solution edits {edits:?}, files says {files:?}"
                        ));
                    }
                }
                Err(err) => problems.push(format!("{name}: no solution.patch: {err}")),
            }
            for file in &exercise.files {
                if !root.join(file).is_file() {
                    problems.push(format!("{name}: no file {file}"));
                }
            }
            if !checkers.contains(&format!("fn {}()", exercise.checker)) {
                problems.push(format!(
                    "{name}: no checker {} in exercises.rs",
                    exercise.checker
                ));
            }
            match chapters.iter().position(|c| *c == exercise.chapter) {
                None => problems.push(format!(
                    "{name}: chapter {} is not in SUMMARY.md",
                    exercise.chapter
                )),
                Some(at) if at < last_chapter => {
                    problems.push(format!(
                        "{name}: listed after an exercise of a later chapter"
                    ));
                }
                Some(at) => last_chapter = at,
            }
        }
        for chapter in &chapters {
            let asks = course.exercises.iter().any(|e| e.chapter == *chapter);
            let exempt = NO_EXERCISE.iter().any(|(c, _)| c == chapter);
            if !asks && !exempt {
                problems.push(format!("{chapter} asks for no exercise"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    fn course(names: &[&str]) -> Course {
        Course {
            root: PathBuf::from("/nowhere"),
            exercises: names
                .iter()
                .map(|name| Exercise {
                    name: (*name).to_owned(),
                    title: String::new(),
                    chapter: String::new(),
                    files: vec!["x".into()],
                    checker: format!("exercise_{name}"),
                })
                .collect(),
        }
    }

    /// A name is found whole, without its number, or with dashes.
    #[test]
    fn names_are_found_with_or_without_their_number() {
        let course = course(&["01_echo_url", "04_keep_alive"]);
        assert_eq!(course.find("04_keep_alive").unwrap().name, "04_keep_alive");
        assert_eq!(course.find("keep_alive").unwrap().name, "04_keep_alive");
        assert_eq!(course.find("keep-alive").unwrap().name, "04_keep_alive");
    }

    /// A mistyped name gets the closest one as a suggestion.
    #[test]
    fn a_mistyped_name_suggests_the_closest() {
        let course = course(&["01_echo_url", "04_keep_alive", "07_oneshot"]);
        let err = course.find("keepalive").unwrap_err().to_string();
        assert!(err.contains("did you mean `04_keep_alive`"), "{err}");
        let err = course.find("oneshoot").unwrap_err().to_string();
        assert!(err.contains("did you mean `07_oneshot`"), "{err}");
        let err = course.find("zzzzzzzzzzzzzz").unwrap_err().to_string();
        assert!(!err.contains("did you mean"), "{err}");
    }

    /// Hints are the sections under `## ` headings, in order.
    #[test]
    fn hints_are_the_sections_of_hints_md() {
        let dir = std::env::temp_dir().join(format!("course-hints-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("hints.md"),
            "# Hints\n\nIntro.\n\n## 1\n\nMild.\n\n## 2: closer\n\nCloser.\nTwo lines.\n",
        )
        .unwrap();
        let hints = hints(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(hints, ["Mild.", "Closer.\nTwo lines."]);
    }
}
