//! The command line: `--help`, bad arguments and a busy port get clear
//! answers, never a panic.

use tests::CONCURRENT_SERVERS;
use tests::command_line::{assert_help_mentions, assert_refused, command, stderr};
use tests::targets::{NOT_HTTP, binaries, every_server};

/// Every server's `--help` names the shared options, the default address,
/// and how to stop it.
#[test]
fn help_describes_every_option() {
    for name in binaries().into_iter().chain(NOT_HTTP.iter().copied()) {
        assert_help_mentions(
            name,
            &[
                "--addr",
                "--backlog",
                "--quiet",
                "127.0.0.1:8080",
                "Ctrl-C",
                "SIGTERM",
            ],
        );
    }
}

/// Examples 3 to 6, the epoll servers of the HOWTO, can print every event,
/// and so can the epoll servers that speak no HTTP.
#[test]
fn epoll_servers_offer_trace() {
    for name in CONCURRENT_SERVERS.iter().chain(NOT_HTTP) {
        assert_help_mentions(name, &["--trace"]);
    }
}

/// A zero backlog, an address that is not one and an unknown option are
/// refused by every server with a message and status 2, not a panic.
#[test]
fn bad_arguments_are_refused_with_a_message() {
    for name in binaries().into_iter().chain(NOT_HTTP.iter().copied()) {
        for args in [
            &["--backlog", "0"][..],
            &["--addr", "nowhere"][..],
            &["--bogus"][..],
        ] {
            assert_refused(name, args);
        }
    }
}

/// A server started on a port another one holds says the port is in use
/// and fails, without a panic.
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
        let stderr = stderr(output.get_output());
        assert!(stderr.contains("in use"), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        // One line, not a backtrace.
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: {stderr}");
    }
}
