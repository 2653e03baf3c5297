//! Example 8, select(2) and poll(2): both serve like example 3; select
//! cannot watch a file descriptor of 1024 or more and refuses such a client
//! cleanly, poll watches as many as the process may open.
//!
//! What every server must do with a request runs for both pollers in
//! `answers.rs` (`…_example08_select`, `…_example08_poll`), and the stop
//! signals in `shutdown.rs`; here is what tells the two apart.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use tests::client::PATIENCE;
use tests::command_line::{assert_help_mentions, assert_refused};
use tests::limits::{limit_nofile, raise_nofile};
use tests::targets::UNAVAILABLE;
use tests::{GET, RESPONSE, Server, connect, request, wait_until};

const BINARY: &str = "example08_select_poll";

/// select's limit: fds 0 to 1023 fit in its bitmaps.
const FD_SETSIZE: usize = 1024;

/// More clients than select can watch.
const MANY: usize = 1100;

/// `--help` names both pollers and the shared options.
#[test]
fn help_names_both_pollers() {
    assert_help_mentions(
        BINARY,
        &["--poller", "select", "poll", "--addr", "--quiet", "SIGTERM"],
    );
}

/// Starts the server with room for 2048 open files: more than select's
/// 1024, so that FD_SETSIZE, not RLIMIT_NOFILE, is the limit that shows.
/// (With the usual soft limit of 1024, accept(2) would fail with EMFILE
/// before any fd reached 1024, and hide select's limit.)
fn start_with_2048_fds(poller: &str) -> Server {
    raise_nofile(4096).expect("the test needs 4096 open files");
    Server::start_with(BINARY, &["--quiet", "--poller", poller], |command| {
        limit_nofile(command, 2048);
    })
}

/// The highest fd number process `pid` has open.
fn highest_fd(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .max()
        .unwrap()
}

/// Reads, without blocking, what has arrived on `stream` into `bytes`;
/// true once the server has closed (end of stream).
fn closed_after(stream: &mut TcpStream, bytes: &mut Vec<u8>) -> bool {
    stream.set_nonblocking(true).unwrap();
    let outcome = stream.read_to_end(bytes);
    stream.set_nonblocking(false).unwrap();
    match outcome {
        Ok(_) => true,
        // Nothing more yet: this client is held, or its answer is on its way.
        Err(err) if err.kind() == ErrorKind::WouldBlock => false,
        Err(err) => panic!("unexpected error: {err}"),
    }
}

/// 1100 silent clients against select: the ones whose fd would be 1024 or
/// more are answered 503 and closed, with a message; the server keeps no fd
/// above 1023, does not crash, and still answers the clients it kept and
/// new ones.
#[test]
fn select_refuses_an_fd_at_or_above_fd_setsize() {
    let server = start_with_2048_fds("select");
    let mut clients: Vec<TcpStream> = (0..MANY).map(|_| connect(server.addr())).collect();

    // Every client is either held by the server or refused (and logged),
    // and no fd of 1024 or more is open: none is being refused right now,
    // and none was kept.
    let refusals = || server.stderr().matches("select(2) cannot watch").count();
    // Both counts from the same look: /proc/net/tcp is no snapshot (the
    // kernel walks its hash table while other tests' sockets come and go),
    // so a second reading may differ by one from the first.
    let mut counts = (0, 0);
    let settled = wait_until(PATIENCE, || {
        counts = (server.connections(), refusals());
        counts.0 + counts.1 == MANY && highest_fd(server.pid()) < FD_SETSIZE
    });
    let (held, refused) = counts;
    assert!(
        settled,
        "held {held}, refused {refused} of {MANY}, highest fd {}",
        highest_fd(server.pid())
    );
    eprintln!("select: held {held} connections, refused {refused}");
    // fds 0-2, the listener and the signalfd come first: at most 1019 fit.
    assert!(held < FD_SETSIZE, "held {held}");
    assert!(refused >= MANY - FD_SETSIZE, "refused {refused}");
    assert_eq!(held + refused, MANY);

    // The refused clients, and only they, got the 503.
    let mut answers = vec![Vec::new(); MANY];
    let mut answered = vec![false; MANY];
    let all_answered = wait_until(PATIENCE, || {
        for (i, client) in clients.iter_mut().enumerate() {
            if !answered[i] {
                answered[i] = closed_after(client, &mut answers[i]);
            }
        }
        answered.iter().filter(|done| **done).count() == refused
    });
    assert!(all_answered, "not every refused client got its 503");
    for (answer, _) in answers.iter().zip(&answered).filter(|(_, done)| **done) {
        assert_eq!(answer, UNAVAILABLE);
    }

    // The server lives on: a client it held is answered...
    let kept = answered.iter().position(|done| !done).unwrap();
    let mut client = clients.swap_remove(kept);
    client.write_all(GET).unwrap();
    let mut response = Vec::new();
    client.read_to_end(&mut response).unwrap();
    assert_eq!(response, RESPONSE);
    // ... and once clients leave, new ones are too.
    drop(clients);
    assert!(wait_until(PATIENCE, || server.connections() == 0));
    assert_eq!(request(server.addr(), GET), RESPONSE);
}

/// poll has no FD_SETSIZE: 1100 clients are all held, fds above 1023
/// included, and the newest of them is answered.
#[test]
fn poll_watches_more_than_1024_fds() {
    let server = start_with_2048_fds("poll");
    let mut clients: Vec<TcpStream> = (0..MANY).map(|_| connect(server.addr())).collect();
    let held = wait_until(PATIENCE, || server.connections() == MANY);
    assert!(held, "held {} of {MANY}", server.connections());
    assert!(highest_fd(server.pid()) >= FD_SETSIZE);
    assert!(!server.stderr().contains("refused"), "{}", server.stderr());

    // The last client has the highest fd; the first one a low one.
    for mut client in [clients.pop().unwrap(), clients.swap_remove(0)] {
        client.write_all(GET).unwrap();
        let mut response = Vec::new();
        client.read_to_end(&mut response).unwrap();
        assert_eq!(response, RESPONSE);
    }
}

/// The binary refuses an unknown poller with a message, not a panic.
#[test]
fn an_unknown_poller_is_refused() {
    let stderr = assert_refused(BINARY, &["--poller", "epoll"]);
    assert!(stderr.contains("possible values"), "{stderr}");
}
