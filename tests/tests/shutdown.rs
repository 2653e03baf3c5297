//! Ctrl-C (SIGINT) and SIGTERM stop every server at once, with status 0,
//! and leave the port free for the next run.

use tests::client::PATIENCE;
use tests::{BLOCKING_SERVERS, CONCURRENT_SERVERS, GET, RESPONSE, Server, connect, request};

fn stops_cleanly(name: &str, signal: i32) {
    let mut server = Server::start(name, &["--quiet"]);
    // A connected client that says nothing: the blocking servers are then
    // inside read(2), the epoll servers hold a connection.
    // (Whether the signal comes before or after the server takes the
    // client, it must stop it.)
    let _silent = connect(server.addr());
    server.signal(signal);
    let status = server
        .wait_exit(PATIENCE)
        .unwrap_or_else(|| panic!("{name} did not stop"));
    assert_eq!(status.code(), Some(0), "{name}: {status}");

    // SO_REUSEADDR: a new server binds the same port at once, even though
    // the old connection may linger in TIME_WAIT.
    let addr = server.addr().to_string();
    let again = Server::start(name, &["--quiet", "--addr", &addr]);
    assert_eq!(request(again.addr(), GET), RESPONSE);
}

#[test]
fn sigint_stops_every_server_with_status_0() {
    for name in BLOCKING_SERVERS.iter().chain(CONCURRENT_SERVERS) {
        stops_cleanly(name, libc::SIGINT);
    }
}

#[test]
fn sigterm_stops_every_server_with_status_0() {
    for name in BLOCKING_SERVERS.iter().chain(CONCURRENT_SERVERS) {
        stops_cleanly(name, libc::SIGTERM);
    }
}
