//! The command line: `--help`, bad arguments and a busy port get clear
//! answers, never a panic.

use std::time::Duration;

use assert_cmd::Command;
use tests::CONCURRENT_SERVERS;
use tests::binary;
use tests::targets::{binaries, every_server};

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

/// The shared options, and how to stop the server.
#[test]
fn help_describes_every_option() {
    for name in binaries() {
        let output = command(name).arg("--help").assert().success();
        let help = text(&output.get_output().stdout);
        for option in [
            "--addr",
            "--backlog",
            "--quiet",
            "127.0.0.1:8080",
            "Ctrl-C",
            "SIGTERM",
        ] {
            assert!(
                help.contains(option),
                "{name} --help lacks {option}:\n{help}"
            );
        }
    }
}

/// Examples 3 to 6, the epoll servers of the HOWTO, can print every event.
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
    for name in binaries() {
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
    for target in every_server() {
        let name = target.name;
        let first = target.start(&["--quiet"]);
        let output = command(target.binary)
            .args(target.args)
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
