//! Running an exercise's checker, and saying in a few lines why it failed.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::info::Exercise;
use crate::state::Outcome;

/// What a check found.
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    /// A few readable lines: why it failed (empty when solved).
    pub summary: Vec<String>,
}

/// The command that runs `exercise`'s checker, as a student would type it.
pub fn command_line(exercise: &Exercise) -> String {
    format!(
        "cargo test -p tests --test exercises {} -- --ignored --exact",
        exercise.checker
    )
}

/// Runs the checker of `exercise` in the workspace at `root`: builds what
/// it needs, runs the one test, and reads its output.
pub fn run(root: &Path, exercise: &Exercise) -> anyhow::Result<Report> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root)
        .args([
            "test",
            "--quiet",
            "-p",
            "tests",
            "--test",
            "exercises",
            "--",
        ])
        .args(["--ignored", "--exact", &exercise.checker])
        // One line of panic message, not a backtrace.
        .env("RUST_BACKTRACE", "0")
        .output()
        .context("cannot run cargo")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        if stdout.contains("1 passed") {
            return Ok(Report {
                outcome: Outcome::Solved,
                summary: Vec::new(),
            });
        }
        bail!(
            "the checker `{}` was not found in tests/tests/exercises.rs \
             (is exercises/info.toml right?)",
            exercise.checker
        );
    }
    let summary = panic_message(&stdout)
        .or_else(|| compile_error(&stderr))
        .unwrap_or_else(|| last_lines(&format!("{stdout}{stderr}"), 12));
    Ok(Report {
        outcome: Outcome::Unsolved,
        summary,
    })
}

/// The checker's panic: where, and its message (at most 10 lines).
fn panic_message(stdout: &str) -> Option<Vec<String>> {
    let mut lines = stdout.lines();
    let header = lines.find(|line| line.contains("panicked at "))?;
    let place = header
        .split("panicked at ")
        .nth(1)
        .unwrap_or("")
        .trim_end_matches(':');
    let mut summary: Vec<String> = lines
        .take_while(|line| {
            !line.starts_with("note: ")
                && !line.starts_with("stack backtrace")
                && !line.starts_with("failures:")
        })
        .map(str::to_owned)
        .collect();
    while summary.last().is_some_and(|line| line.trim().is_empty()) {
        summary.pop();
    }
    summary.truncate(10);
    summary.push(format!("(checker: {place})"));
    Some(summary)
}

/// The first compiler error, with its location and source lines.
fn compile_error(stderr: &str) -> Option<Vec<String>> {
    let start = stderr
        .lines()
        .position(|line| line.starts_with("error[") || line.starts_with("error: "))?;
    let mut summary = vec!["the code does not compile:".to_owned()];
    summary.extend(
        stderr
            .lines()
            .skip(start)
            .take_while(|line| !line.is_empty())
            .take(14)
            .map(str::to_owned),
    );
    Some(summary)
}

fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|line| (*line).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic becomes its message and its place, without the rest of
    /// cargo's report.
    #[test]
    fn a_panic_is_summarised_by_its_message() {
        let stdout = "\nrunning 1 test\ntest exercise_01_echo_url ... FAILED\n\nfailures:\n\n\
            ---- exercise_01_echo_url stdout ----\n\n\
            thread 'exercise_01_echo_url' (2342) panicked at tests/tests/exercises.rs:41:5:\n\
            assertion `left == right` failed: the body is not the URL\n  left: \"Hello, world!\"\n right: \"/hello/world\"\n\
            note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\n\n\
            failures:\n    exercise_01_echo_url\n\ntest result: FAILED. 0 passed; 1 failed\n";
        let summary = panic_message(stdout).unwrap();
        assert_eq!(
            summary,
            [
                "assertion `left == right` failed: the body is not the URL",
                "  left: \"Hello, world!\"",
                " right: \"/hello/world\"",
                "(checker: tests/tests/exercises.rs:41:5)",
            ]
        );
    }

    /// A compile error is shown as the compiler's first error.
    #[test]
    fn a_compile_error_is_summarised_by_the_first_error() {
        let stderr = "warning: unused\n\nerror[E0425]: cannot find value `x` in this scope\n  \
            --> example01_blocking/src/main.rs:3:5\n   |\n3  |     x\n   |     ^ not found\n\n\
            error: aborting due to 1 previous error\n";
        let summary = compile_error(stderr).unwrap();
        assert_eq!(summary[0], "the code does not compile:");
        assert_eq!(
            summary[1],
            "error[E0425]: cannot find value `x` in this scope"
        );
        assert!(summary.iter().any(|line| line.contains("main.rs:3:5")));
        assert!(!summary.iter().any(|line| line.contains("aborting")));
    }
}
