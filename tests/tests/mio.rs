//! Example 14, example 4 on mio: what mio asks of epoll, that its events
//! are edge-triggered (so the server drains), that its Waker wakes a loop
//! asleep in epoll_wait, and how it pauses accepting when out of file
//! descriptors. The kernel's side is read from /proc; mio's own behaviour
//! with a partial read is in example14_mio/tests/edge.rs.

use std::io::Write;
use std::net::TcpStream;

use tests::client::PATIENCE;
use tests::limits::limit_nofile;
use tests::process::{self, threads_in_epoll_wait};
use tests::{GET, RESPONSE, Server, connect, wait_until};

const NAME: &str = "example14_mio";

const EPOLLIN: u32 = 0x001;
const EPOLLERR: u32 = 0x008;
const EPOLLHUP: u32 = 0x010;
const EPOLLRDHUP: u32 = 0x2000;
const EPOLLET: u32 = 1 << 31;

/// `Interest::READABLE` is EPOLLIN|EPOLLRDHUP, and mio always adds EPOLLET:
/// the kernel's record of the connection's interest entry
/// (/proc/PID/fdinfo) says so, as the mio chapter claims from mio's
/// source. (EPOLLERR and EPOLLHUP the kernel adds to every entry.)
#[test]
fn readable_interest_is_epollin_rdhup_edge_triggered() {
    let server = Server::start(NAME, &["--quiet"]);
    let (_silent, events) = server.silent_client_interest();
    assert_eq!(
        events & !(EPOLLERR | EPOLLHUP),
        EPOLLIN | EPOLLRDHUP | EPOLLET,
        "{NAME} registered a connection with {events:#x}"
    );
}

/// One 6 KiB request written at once is one edge: mio reports the
/// connection readable once (twice if the bytes happened to arrive in two
/// parts), and the server reads all of it on that event, until EAGAIN.
/// A server that read once per event would never see the end of the
/// request: no second event comes for bytes already there.
#[test]
fn a_six_kib_request_is_read_on_one_event() {
    let server = Server::start(NAME, &["--quiet", "--trace"]);
    let mut request = b"GET / HTTP/1.0\r\nX-Filler: ".to_vec();
    request.resize(6 * 1024 - 4, b'x');
    request.extend_from_slice(b"\r\n\r\n");
    assert_eq!(tests::request(server.addr(), &request), RESPONSE);

    // The connection's token is the one that became WRITABLE; its
    // READABLE lines come before that one in the trace.
    assert!(server.wait_for_stderr(PATIENCE, |trace| trace.contains("WRITABLE")));
    let trace = server.stderr();
    let connection = trace
        .lines()
        .find(|line| line.contains("WRITABLE"))
        .and_then(|line| line.split(':').next())
        .unwrap()
        .to_owned();
    let readable = trace
        .lines()
        .filter(|line| line.starts_with(&format!("{connection}:")) && line.contains("READABLE"))
        .count();
    assert!(
        (1..=2).contains(&readable),
        "{readable} READABLE events for one 6 KiB write; trace:\n{trace}"
    );
}

/// The loop sleeps in epoll_wait; SIGINT and SIGTERM are taken by another
/// thread, which can reach the loop only through the Waker's eventfd. The
/// eventfd is in the loop's interest list, the loop thread is in
/// epoll_wait when the signal comes, and it wakes with the Waker's token
/// and exits with status 0.
#[test]
fn the_waker_wakes_the_loop_out_of_epoll_wait() {
    let mut server = Server::start(NAME, &["--quiet", "--trace"]);
    let pid = server.pid();
    // The Waker: an eventfd, registered READABLE (edge-triggered) under
    // the token usize::MAX. (The `listening on` line comes first: wait for
    // it to be made.)
    let mut eventfds = Vec::new();
    let made = wait_until(PATIENCE, || {
        eventfds = process::anon_inode_fds(pid, "[eventfd]");
        !eventfds.is_empty()
    });
    assert!(made, "no eventfd; fds: {:?}", process::fd_targets(pid));
    assert_eq!(eventfds.len(), 1, "fds: {:?}", process::fd_targets(pid));
    let mut interest = Vec::new();
    let watched = wait_until(PATIENCE, || {
        interest = process::epoll_interest(pid);
        interest.iter().any(|(fd, _)| *fd == eventfds[0])
    });
    let waker = interest.iter().find(|(fd, _)| *fd == eventfds[0]);
    assert!(
        watched
            && waker.is_some_and(|(_, events)| events & (EPOLLIN | EPOLLET) == EPOLLIN | EPOLLET),
        "the eventfd is not watched for EPOLLIN|EPOLLET: {interest:?}"
    );
    // The loop (the main thread, whose id is the pid) is asleep in
    // epoll_wait, and no other thread is: the stop thread waits in poll(2).
    let asleep = wait_until(PATIENCE, || {
        process::thread_syscalls(pid)
            .iter()
            .any(|(tid, _, syscall)| *tid == pid && process::is_epoll_wait(syscall))
    });
    assert!(
        asleep && threads_in_epoll_wait(pid) == 1,
        "the loop is not asleep in epoll_wait alone: {:?}",
        process::thread_syscalls(pid)
    );

    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(PATIENCE)
        .unwrap_or_else(|| panic!("{NAME} still runs {PATIENCE:?} after SIGTERM"));
    assert_eq!(status.code(), Some(0), "{status}");
    // (The trace may still be on its way through the pipe.)
    assert!(
        server.wait_for_stderr(PATIENCE, |trace| trace
            .lines()
            .any(|line| line == "waker: READABLE")),
        "the loop did not wake for the Waker; trace:\n{}",
        server.stderr()
    );
}

/// Out of file descriptors, example 4 stops watching its listener with
/// epoll_ctl(EPOLL_CTL_MOD) to no events. A mio Interest cannot be empty,
/// so example 14 takes the listener out of the interest list
/// (EPOLL_CTL_DEL) for the pause and adds it back after (EPOLL_CTL_ADD).
/// The kernel shows the entry gone during a pause, and back once
/// descriptors are free. (That the server neither spins nor strands its
/// queue is the table's out_of_file_descriptors_neither_kills_nor_spins.)
#[test]
fn out_of_descriptors_the_listener_leaves_the_interest_list() {
    let server = Server::start_with(NAME, &["--quiet"], |command| limit_nofile(command, 64));
    let pid = server.pid();
    // The listener is the one socket before any client connects.
    let sockets = process::socket_fds(pid);
    assert_eq!(sockets.len(), 1, "fds: {:?}", process::fd_targets(pid));
    let listener = sockets[0];
    let watched = || {
        process::epoll_interest(pid)
            .iter()
            .any(|(fd, _)| *fd == listener)
    };
    assert!(
        wait_until(PATIENCE, watched),
        "the listener is never watched"
    );

    let mut clients: Vec<TcpStream> = (0..100).map(|_| connect(server.addr())).collect();
    assert!(
        server.wait_for_stderr(PATIENCE, |err| err.contains("Too many open files")),
        "{NAME} never reported EMFILE; stderr:\n{}",
        server.stderr()
    );
    // It comes back every 100 ms to try again, and leaves at once: look
    // until a look falls inside a pause.
    assert!(
        wait_until(PATIENCE, || !watched()),
        "the listener stayed in the interest list while accept(2) failed"
    );

    // Free the descriptors: the listener is watched again, and the clients
    // still queued are served.
    let mut waiting = clients.split_off(90);
    drop(clients);
    assert!(
        wait_until(PATIENCE, watched),
        "the listener never came back"
    );
    for client in &mut waiting {
        client.write_all(GET).unwrap();
    }
    for mut client in waiting {
        let mut response = Vec::new();
        std::io::Read::read_to_end(&mut client, &mut response).unwrap();
        assert_eq!(response, RESPONSE);
    }
}
