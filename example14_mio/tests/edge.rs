//! mio's events are edge-triggered: after a partial read, no new event
//! comes for the bytes left behind, so a mio program must read until
//! WouldBlock (mio's `Poll` docs: "Draining readiness"). Only new bytes,
//! or registering again, make a new event.
//!
//! Run with `cargo test -p example14_mio`.

use std::io::{self, Read, Write};
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const CONNECTION: Token = Token(1);

/// Long enough for a loopback write to arrive many times over; an event
/// that has not come by then is not coming.
const NO_EVENT_WAIT: Duration = Duration::from_millis(200);

/// How long an event that is coming may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// Waits up to `timeout` and returns the tokens of the events that came.
fn events(poll: &mut Poll, timeout: Duration) -> Vec<Token> {
    let mut events = Events::with_capacity(8);
    loop {
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => return events.iter().map(|event| event.token()).collect(),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => panic!("poll: {err}"),
        }
    }
}

/// Reads until WouldBlock and returns how many bytes came.
fn drain(stream: &mut TcpStream) -> usize {
    let mut buffer = [0u8; 1024];
    let mut total = 0;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return total,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => panic!("read: {err}"),
        }
    }
}

/// A connected pair: a blocking std client, and the server's side as a
/// non-blocking mio stream registered READABLE with `poll`.
fn pair(poll: &Poll) -> (std::net::TcpStream, TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    accepted.set_nonblocking(true).unwrap();
    let mut server = TcpStream::from_std(accepted);
    poll.registry()
        .register(&mut server, CONNECTION, Interest::READABLE)
        .unwrap();
    (client, server)
}

#[test]
fn after_a_partial_read_no_new_event_comes() {
    let mut poll = Poll::new().unwrap();
    let (mut client, mut server) = pair(&poll);

    // 6 KiB in one write: one edge, one event.
    client.write_all(&[b'x'; 6 * 1024]).unwrap();
    assert_eq!(events(&mut poll, PATIENCE), [CONNECTION]);

    // Read 1 KiB of it, as the tutorial's loop does per event, and stop.
    let mut first = [0u8; 1024];
    assert_eq!(server.read(&mut first).unwrap(), 1024);

    // 5 KiB are still there, and the socket is readable; but nothing
    // *changed*, so no event comes. A level-triggered epoll would report
    // the socket again here.
    assert_eq!(
        events(&mut poll, NO_EVENT_WAIT),
        [],
        "an event came for bytes left unread"
    );
    assert_eq!(drain(&mut server), 5 * 1024, "the rest was there all along");

    // New bytes are a new edge.
    client.write_all(b"more").unwrap();
    assert_eq!(events(&mut poll, PATIENCE), [CONNECTION]);
    assert_eq!(drain(&mut server), 4);
}

/// Registering again is the other way to a new event: epoll_ctl(MOD)
/// (mio's `reregister`) and epoll_ctl(ADD) (`register` after
/// `deregister`) make the kernel check the socket as it stands, and report
/// it if it is ready. This is how example 14 resumes accepting after a
/// pause.
#[test]
fn registering_again_reports_what_is_already_there() {
    let mut poll = Poll::new().unwrap();
    let (mut client, mut server) = pair(&poll);
    client.write_all(&[b'x'; 2048]).unwrap();
    assert_eq!(events(&mut poll, PATIENCE), [CONNECTION]);
    let mut first = [0u8; 1024];
    assert_eq!(server.read(&mut first).unwrap(), 1024);
    assert_eq!(events(&mut poll, NO_EVENT_WAIT), []);

    // EPOLL_CTL_MOD with the same interest: the unread KiB is reported.
    poll.registry()
        .reregister(&mut server, CONNECTION, Interest::READABLE)
        .unwrap();
    assert_eq!(events(&mut poll, PATIENCE), [CONNECTION]);
    assert_eq!(events(&mut poll, NO_EVENT_WAIT), [], "once, not again");

    // EPOLL_CTL_DEL, then EPOLL_CTL_ADD: reported again.
    poll.registry().deregister(&mut server).unwrap();
    poll.registry()
        .register(&mut server, CONNECTION, Interest::READABLE)
        .unwrap();
    assert_eq!(events(&mut poll, PATIENCE), [CONNECTION]);
    assert_eq!(drain(&mut server), 1024);
}
