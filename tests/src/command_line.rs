//! Running an example binary to its end: `--help`, and arguments it must
//! refuse.

use std::time::Duration;

use assert_cmd::Command;

/// Binary `name` as a command, bounded by a 20 s timeout: a binary that
/// started serving instead of failing would otherwise hang the test.
pub fn command(name: &str) -> Command {
    let mut command = Command::new(crate::binary(name));
    command.timeout(Duration::from_secs(20));
    command
}

/// What `output` wrote to stderr, as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `name --help`, asserts that it succeeds and mentions each of
/// `words`, and returns the help.
pub fn assert_help_mentions(name: &str, words: &[&str]) -> String {
    let output = command(name).arg("--help").assert().success();
    let help = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    for word in words {
        assert!(help.contains(word), "{name} --help lacks {word}:\n{help}");
    }
    help
}

/// Runs `name` with `args`, and asserts that it refuses them as a usage
/// error: status 2 and a message that begins `error:`, not a panic.
/// Returns the message, for what else it should say.
pub fn assert_refused(name: &str, args: &[&str]) -> String {
    let output = command(name).args(args).assert().code(2);
    let stderr = stderr(output.get_output());
    assert!(stderr.starts_with("error:"), "{name} {args:?}: {stderr}");
    stderr
}
