//! Ctrl-C (SIGINT) and SIGTERM stop every server at once, with status 0,
//! and leave the port free for the next run.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tests::client::PATIENCE;
use tests::connect;
use tests::raw::{self, Raw};
use tests::targets::{Target, every_server};

/// How soon a server must be gone after the signal. Exiting takes
/// milliseconds; this much is for a loaded machine.
const PROMPTLY: Duration = Duration::from_secs(5);

fn stops_cleanly(target: &Target, signal: i32) {
    let name = target.name;
    let mut server = target.start(&["--quiet"]);
    // A connected client that says nothing: the blocking servers are then
    // inside read(2) (example 7: one of its threads), the others hold a
    // connection. (Whether the signal comes before or after the server
    // takes the client, it must stop it.)
    let _silent = connect(server.addr());
    let sent = Instant::now();
    server.signal(signal);
    let status = server
        .wait_exit(PATIENCE)
        .unwrap_or_else(|| panic!("{name} did not stop within {PATIENCE:?}"));
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(0), "{name}: {status}");
    assert!(took < PROMPTLY, "{name} took {took:?} to stop");

    // SO_REUSEADDR: a new server binds the same port at once, even though
    // the old connection may linger in TIME_WAIT.
    let addr = server.addr().to_string();
    let again = target.start(&["--quiet", "--addr", &addr]);
    target.assert_answers(&again, "restarted on the same port");
}

/// Ctrl-C (SIGINT) stops every server promptly with status 0, and its port
/// is free for a new one at once.
#[test]
fn sigint_stops_every_server_with_status_0() {
    for target in every_server() {
        stops_cleanly(target, libc::SIGINT);
    }
}

/// SIGTERM stops every server promptly with status 0, and its port is
/// free for a new one at once.
#[test]
fn sigterm_stops_every_server_with_status_0() {
    for target in every_server() {
        stops_cleanly(target, libc::SIGTERM);
    }
}

/// A server stuck printing into a full stdout still stops on SIGTERM and
/// SIGINT, with status 0.
#[test]
fn stop_signals_work_while_nobody_reads_stdout() {
    // A server prints every request (no --quiet). Its stdout is a pipe
    // that nobody reads, like `| less` left on its first page: after 64
    // KiB the pipe is full, and printing the next request would block in
    // write(2). The server then answers no one, which is fair (it waits
    // for its log, as the Python's print would); but Ctrl-C and SIGTERM
    // must still stop it. common::output waits for room *or* a stop
    // signal.
    for target in every_server().filter(|t| t.binary != "example01_blocking") {
        let name = target.name;
        for signal in [libc::SIGTERM, libc::SIGINT] {
            // stdout is read up to the `listening on` line, and no further;
            // its read end stays open.
            let Raw {
                mut process,
                addr,
                stdout,
                ..
            } = raw::start(target.binary, target.args, Stdio::null());
            let unread = OwnedFd::from(stdout);
            // Each request prints about 80 bytes: the pipe is full after
            // about 800. Ask until the pipe says it is full and a request
            // goes unanswered: the server is stuck printing then.
            let answered = raw::fill_stdout(
                &process,
                &unread,
                || {
                    let mut stream = connect(addr);
                    stream.write_all(target.request).unwrap();
                    stream
                },
                |response| {
                    assert_eq!(
                        response,
                        target.response,
                        "{name}: {:?}",
                        String::from_utf8_lossy(response)
                    )
                },
            );
            assert!(
                raw::nearly_full(&unread),
                "{name}: stdout at {:?} (bytes, capacity)",
                raw::pipe_fill(&unread)
            );
            process.signal(signal);
            let status = process.wait_exit(PROMPTLY).unwrap_or_else(|| {
                panic!(
                    "{name}: signal {signal} did not stop it within {PROMPTLY:?} with stdout full after {answered} requests"
                )
            });
            assert_eq!(status.code(), Some(0), "{name}, signal {signal}: {status}");
        }
    }
}
