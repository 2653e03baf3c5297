//! Ctrl-C (SIGINT) and SIGTERM stop every server at once, with status 0,
//! and leave the port free for the next run.

use std::time::{Duration, Instant};

use tests::client::PATIENCE;
use tests::connect;
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

#[test]
fn sigint_stops_every_server_with_status_0() {
    for target in every_server() {
        stops_cleanly(target, libc::SIGINT);
    }
}

#[test]
fn sigterm_stops_every_server_with_status_0() {
    for target in every_server() {
        stops_cleanly(target, libc::SIGTERM);
    }
}
