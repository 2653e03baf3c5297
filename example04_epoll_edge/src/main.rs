//! Example 4: edge-triggered epoll.
//!
//! The same server as example 3, with one flag more: EPOLLET. Level-triggered
//! epoll reports a socket in every epoll_wait(2) for as long as it is ready;
//! edge-triggered epoll reports it once, when it *becomes* ready (new bytes
//! arrive, a new client queues up, buffer space frees). So each event must be
//! used to the full: accept, read and write each loop until the kernel says
//! EAGAIN. Stopping earlier leaves work that no event will ever announce.
//!
//! Run it with `cargo run -p example04_epoll_edge`, then `curl
//! http://127.0.0.1:8080/`. Add `-- --trace` to see every event epoll reports.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

use clap::Parser;
use common::{EpollArgs, PendingResponse, Progress, RequestBuffer, is_transient, token_of};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

/// Example 4 of the epoll HOWTO: serve many clients from one thread with
/// edge-triggered epoll. Stop it with Ctrl-C (SIGINT) or SIGTERM: it
/// closes its sockets and exits with status 0.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    epoll: EpollArgs,
}

// ANCHOR: connection
/// What the server holds for one client.
///
/// The Python keeps three dicts keyed by file descriptor (`connections`,
/// `requests`, `responses`) and, on hang-up, deletes from only the first: the
/// other two grow with every client ever served. One map of this struct
/// cannot forget a part: removing the entry drops the socket (closing it),
/// the request and the response together.
struct Connection {
    stream: TcpStream,
    request: RequestBuffer,
    response: PendingResponse,
}
// ANCHOR_END: connection

// ANCHOR: main
fn main() -> common::MainResult {
    let args = Args::parse();
    // Block SIGINT and SIGTERM before anything else, so that from here on
    // they wait in a file descriptor (signalfd) instead of killing the
    // process. See common::signals.
    let stop = common::stop_signals()?;
    let listener = common::listen(&args.epoll.server)?;
    // O_NONBLOCK: accept(2) on this socket now fails with EAGAIN
    // (io::ErrorKind::WouldBlock) instead of waiting for a client.
    listener.set_nonblocking(true)?;
    // epoll tells us which file descriptor is ready by returning the 64-bit
    // token we registered it with. Like the Python, we use the fd number.
    let listener_token = token_of(&listener);

    // epoll_create1(2): a new epoll instance, itself a file descriptor. It
    // holds the interest list (what we watch) and the ready list (the
    // watched fds the kernel has found ready, for epoll_wait to hand out).
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    // epoll_ctl(EPOLL_CTL_ADD): watch the listener for EPOLLIN, which on a
    // listening socket means "a connection is waiting in the accept queue".
    // EPOLLET: report it when a new connection arrives, not for as long as
    // the queue is not empty.
    let edge_in = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
    epoll.add(&listener, EpollEvent::new(edge_in, listener_token))?;
    // Takes clients off the queue, and stops watching the listener for a
    // moment when accept(2) runs out of file descriptors, instead of
    // stranding the queue (common::accept says why).
    let mut acceptor = common::Acceptor::new(edge_in, listener_token);

    // Stopping is one more event in the same loop: the signalfd made at
    // the start of `main` becomes readable when SIGINT or SIGTERM arrives.
    let stop_token = token_of(&stop);
    epoll.add(&stop, EpollEvent::new(EpollFlags::EPOLLIN, stop_token))?;

    let mut connections: HashMap<u64, Connection> = HashMap::new();
    let mut events = [EpollEvent::empty(); 64];
    loop {
        // epoll_wait(2): sleep until at least one watched fd is ready, and
        // fill `events` with up to 64 of them. No timeout, except while
        // accepting is paused. SIGINT and SIGTERM do not interrupt the
        // wait (they are blocked, and wait in the signalfd), but a stop and
        // continue does (Ctrl-Z, then fg): EINTR (signal(7)), which nix
        // returns as an error. Just wait again.
        let ready = match epoll.wait(&mut events, acceptor.timeout()) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        };
        acceptor.resume(&epoll, &listener)?;

        for event in &events[..ready] {
            let (token, flags) = (event.data(), event.events());
            if args.epoll.trace {
                common::trace_event(token, flags.bits() as u32);
            }

            if token == stop_token {
                // Returning drops the connections, the epoll instance and
                // the listener: every fd is closed, as the Python's
                // `finally` blocks do.
                return Ok(());
            }
            // ANCHOR: accept
            if token == listener_token {
                // Edge-triggered: this one event may stand for many queued
                // clients, and no second event comes for them. Accept until
                // the queue is empty: `None` is EAGAIN (or accepting just
                // paused, and re-arming the listener makes a fresh edge).
                while let Some((stream, _address)) = acceptor.accept(&epoll, &listener)? {
                    register(&epoll, &mut connections, stream);
                }
                continue;
            }
            // ANCHOR_END: accept

            let Some(connection) = connections.get_mut(&token) else {
                continue;
            };
            let outcome = if flags.contains(EpollFlags::EPOLLIN) {
                on_readable(&epoll, token, connection, args.epoll.server.quiet)
            } else if flags.contains(EpollFlags::EPOLLOUT) {
                on_writable(&epoll, token, connection)
            } else {
                // EPOLLHUP or EPOLLERR: the kernel reports these whatever we
                // asked for. After our shutdown (below) it is EPOLLHUP.
                Err(io::ErrorKind::ConnectionAborted.into())
            };
            if outcome.is_err() {
                close(&epoll, &mut connections, token);
            }
        }
    }
}
// ANCHOR_END: main

// ANCHOR: register
/// Makes a newly accepted connection non-blocking and starts watching it.
fn register(epoll: &Epoll, connections: &mut HashMap<u64, Connection>, stream: TcpStream) {
    let token = token_of(&stream);
    let watched = stream.set_nonblocking(true).and_then(|()| {
        // Watch for EPOLLIN, edge-triggered: an event each time new bytes of
        // the request arrive (or the client closes, which reads as 0 bytes).
        // Bytes already here when we register count as an edge too.
        let interest = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, token);
        epoll.add(&stream, interest).map_err(io::Error::from)
    });
    match watched {
        Ok(()) => {
            let connection = Connection {
                stream,
                request: RequestBuffer::new(),
                response: PendingResponse::whole(),
            };
            connections.insert(token, connection);
        }
        // Dropping the stream closes it: the client sees its connection end.
        Err(err) => common::warn(format_args!("cannot watch a new connection: {err}")),
    }
}
// ANCHOR_END: register

// ANCHOR: readable
/// EPOLLIN: read everything that has arrived. An error means "close this
/// client".
fn on_readable(
    epoll: &Epoll,
    token: u64,
    connection: &mut Connection,
    quiet: bool,
) -> io::Result<()> {
    let mut buffer = [0u8; 1024];
    // Edge-triggered: the event said "new bytes arrived", once. Read until
    // EAGAIN: bytes left unread now would wait for the client to send more,
    // which it will not do before it has its response.
    let progress = loop {
        let n = match connection.stream.read(&mut buffer) {
            // 0 bytes: the client closed its side before its request was
            // complete (a complete one would have ended the loop first).
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            // EAGAIN: drained, and the request is not complete yet. The next
            // bytes to arrive make the next edge.
            Err(err) if is_transient(&err) => return Ok(()),
            // ECONNRESET and friends.
            Err(err) => return Err(err),
        };
        match connection.request.push(&buffer[..n]) {
            Progress::Incomplete => continue,
            done => break done,
        }
    };
    match progress {
        Progress::TooLarge => connection.response = PendingResponse::too_large(),
        _ if !quiet => common::print_request(&connection.request),
        _ => {}
    }
    // epoll_ctl(EPOLL_CTL_MOD): stop watching for EPOLLIN, watch for
    // EPOLLOUT, which reports "the send buffer has room". Modifying the
    // interest re-checks readiness, so this reports at once if there is room.
    let mut interest = EpollEvent::new(EpollFlags::EPOLLOUT | EpollFlags::EPOLLET, token);
    epoll.modify(&connection.stream, &mut interest)?;
    Ok(())
}
// ANCHOR_END: readable

// ANCHOR: writable
/// EPOLLOUT: send until the response is gone or the send buffer is full.
fn on_writable(epoll: &Epoll, token: u64, connection: &mut Connection) -> io::Result<()> {
    // Edge-triggered: the event said "room appeared", once. Write until the
    // response is sent or EAGAIN says the buffer is full again; then the
    // next edge comes when the client has read enough to make room.
    while !connection.response.is_done() {
        match connection.stream.write(connection.response.unsent()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => connection.response.advance(n),
            Err(err) if is_transient(&err) => return Ok(()),
            // EPIPE or ECONNRESET: the client has gone.
            Err(err) => return Err(err),
        }
    }
    // Watch for nothing more (the kernel still reports EPOLLHUP and
    // EPOLLERR) and shut both directions down: the kernel sends FIN after
    // the response. Both directions shut means EPOLLHUP, and that event
    // closes the socket in `main`.
    let mut interest = EpollEvent::new(EpollFlags::EPOLLET, token);
    epoll.modify(&connection.stream, &mut interest)?;
    connection.stream.shutdown(Shutdown::Both)
}
// ANCHOR_END: writable

// ANCHOR: close
/// Forgets a client: stop watching its socket, then close it.
fn close(epoll: &Epoll, connections: &mut HashMap<u64, Connection>, token: u64) {
    if let Some(connection) = connections.remove(&token) {
        // epoll_ctl(EPOLL_CTL_DEL). Closing the fd would also remove it from
        // the interest list, but only if no other fd refers to the same
        // socket: saying so explicitly is always right.
        let _ = epoll.delete(&connection.stream);
        // `connection` is dropped here: close(2), exactly once.
    }
}
// ANCHOR_END: close
