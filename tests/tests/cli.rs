//! The command line: `--help`, bad arguments and a busy port get clear
//! answers, never a panic.

use std::time::Duration;

use assert_cmd::Command;
use tests::{BLOCKING_SERVERS, CONCURRENT_SERVERS, Server, binary};

fn all_servers() -> impl Iterator<Item = &'static str> {
    BLOCKING_SERVERS.iter().chain(CONCURRENT_SERVERS).copied()
}

fn command(name: &str) -> Command {
    let mut command = Command::new(binary(name));
    // Bounds every run: a binary that started serving instead of failing
    // would otherwise hang the test.
    command.timeout(Duration::from_secs(20));
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_describes_every_option() {
    for name in all_servers() {
        let output = command(name).arg("--help").assert().success();
        let help = text(&output.get_output().stdout);
        for option in [
            "--addr",
            "--backlog",
            "--quiet",
            "127.0.0.1:8080",
            "SIGTERM",
        ] {
            assert!(
                help.contains(option),
                "{name} --help lacks {option}:\n{help}"
            );
        }
    }
}

#[test]
fn epoll_servers_offer_trace() {
    for name in CONCURRENT_SERVERS {
        let output = command(name).arg("--help").assert().success();
        assert!(
            text(&output.get_output().stdout).contains("--trace"),
            "{name}"
        );
    }
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    for name in all_servers() {
        for args in [
            &["--backlog", "0"][..],
            &["--addr", "nowhere"][..],
            &["--bogus"][..],
        ] {
            let output = command(name).args(args).assert().code(2);
            let stderr = text(&output.get_output().stderr);
            assert!(stderr.starts_with("error:"), "{name} {args:?}: {stderr}");
        }
    }
}

#[test]
fn a_busy_port_is_reported_not_panicked() {
    for name in all_servers() {
        let first = Server::start(name, &["--quiet"]);
        let output = command(name)
            .args(["--addr", &first.addr().to_string()])
            .assert()
            .failure();
        let stderr = text(&output.get_output().stderr);
        assert!(stderr.contains("in use"), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        // One line, not a backtrace.
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: {stderr}");
    }
}
