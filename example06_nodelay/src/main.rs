//! Example 6: TCP_NODELAY.
//!
//! The level-triggered server of example 3, writing its response in two
//! sends (headers, then body) and setting TCP_NODELAY on the listening
//! socket, as the tutorial does; Linux copies the option to every socket
//! accept(2) returns.
//!
//! TCP_NODELAY turns off Nagle's algorithm (tcp(7)), which holds a small
//! segment back while an earlier one is unacknowledged. A Linux receiver
//! acknowledges at once on a new connection, but once the exchange looks
//! interactive it delays its ACK (40 ms at least) hoping to piggyback it on
//! data, so a small second send can wait for that timer. With one response
//! per connection, as in the tutorial, it never does: closing the
//! connection pushes the held bytes out at once. On a kept-alive connection
//! every request after the first stalls for the timer, about 44 ms here;
//! TCP_NODELAY removes that.
//!
//! Run it with `cargo run -p example06_nodelay`, then `curl
//! http://127.0.0.1:8080/`. `--no-nodelay` leaves Nagle on; `--keep-alive`
//! answers several requests per connection.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;

use clap::Parser;
use common::{EpollArgs, PendingResponse, Progress, RequestBuffer, is_transient, token_of};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use socket2::SockRef;

/// Example 6 of the epoll HOWTO: level-triggered epoll, with TCP_NODELAY on
/// the listening socket and the response written in two sends. Stop it with
/// Ctrl-C (SIGINT) or SIGTERM: it closes its sockets and exits with status 0.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    epoll: EpollArgs,

    /// Leave Nagle's algorithm on (do not set TCP_NODELAY), to compare.
    #[arg(long)]
    no_nodelay: bool,

    /// Keep each connection open and answer every request on it, instead of
    /// closing after one response (the tutorial's form). This is where
    /// Nagle's algorithm costs time.
    #[arg(long)]
    keep_alive: bool,
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
    // ANCHOR: nodelay
    // setsockopt(TCP_NODELAY, 1) on the listening socket: every socket
    // accept(2) returns starts with it set, so no per-connection call. Set
    // before listen(2), so that no client is accepted without it.
    let nodelay = !args.no_nodelay;
    let listener =
        common::listen_with(&args.epoll.server, |socket| socket.set_tcp_nodelay(nodelay))?;
    // ANCHOR_END: nodelay
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
    epoll.add(
        &listener,
        EpollEvent::new(EpollFlags::EPOLLIN, listener_token),
    )?;
    // Takes clients off the queue, and stops watching the listener for a
    // moment when accept(2) runs out of file descriptors, instead of
    // spinning (common::accept says why).
    let mut acceptor = common::Acceptor::new(EpollFlags::EPOLLIN, listener_token);

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
                // Level-triggered: one accept per event. If more clients are
                // queued, the listener is still readable and the next
                // epoll_wait reports it again. `None`: nobody to take after
                // all (EAGAIN), or accepting just paused.
                if let Some((stream, _address)) = acceptor.accept(&epoll, &listener)? {
                    if args.epoll.trace {
                        trace_nodelay(&stream);
                    }
                    register(&epoll, &mut connections, stream);
                }
                continue;
            }
            // ANCHOR_END: accept

            let Some(connection) = connections.get_mut(&token) else {
                continue;
            };
            let outcome = if flags.contains(EpollFlags::EPOLLIN) {
                on_readable(&epoll, token, connection, &args)
            } else if flags.contains(EpollFlags::EPOLLOUT) {
                on_writable(&epoll, token, connection, &args)
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
        // Watch for EPOLLIN: bytes of the request have arrived (or the
        // client closed, which reads as 0 bytes).
        let interest = EpollEvent::new(EpollFlags::EPOLLIN, token);
        epoll.add(&stream, interest).map_err(io::Error::from)
    });
    match watched {
        Ok(()) => {
            let connection = Connection {
                stream,
                request: RequestBuffer::new(),
                response: PendingResponse::in_two_sends(),
            };
            connections.insert(token, connection);
        }
        // Dropping the stream closes it: the client sees its connection end.
        Err(err) => common::warn(format_args!("cannot watch a new connection: {err}")),
    }
}
// ANCHOR_END: register

// ANCHOR: readable
/// EPOLLIN: read what has arrived, once. An error means "close this client".
fn on_readable(
    epoll: &Epoll,
    token: u64,
    connection: &mut Connection,
    args: &Args,
) -> io::Result<()> {
    let mut buffer = [0u8; 1024];
    let n = match connection.stream.read(&mut buffer) {
        // 0 bytes: the client closed its side before its request was
        // complete. With level-triggered epoll this event repeats for ever;
        // the Python appends b'' and spins. We give up on the client.
        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(n) => n,
        // A spurious wakeup: nothing to read after all. Wait again.
        Err(err) if is_transient(&err) => return Ok(()),
        // ECONNRESET and friends.
        Err(err) => return Err(err),
    };
    match connection.request.push(&buffer[..n]) {
        // Level-triggered: if more bytes are waiting, epoll_wait reports
        // this socket again straight away.
        Progress::Incomplete => return Ok(()),
        Progress::Complete => {
            if !args.epoll.server.quiet {
                common::print_request(&connection.request);
            }
        }
        Progress::TooLarge => connection.response = PendingResponse::too_large(),
    }
    // epoll_ctl(EPOLL_CTL_MOD): stop watching for EPOLLIN, watch for
    // EPOLLOUT, which reports "the send buffer has room".
    let mut interest = EpollEvent::new(EpollFlags::EPOLLOUT, token);
    epoll.modify(&connection.stream, &mut interest)?;
    Ok(())
}
// ANCHOR_END: readable

// ANCHOR: writable
/// EPOLLOUT: send what the kernel will take, once. The headers go on one
/// EPOLLOUT and the body on the next: without TCP_NODELAY, Nagle's
/// algorithm holds the body until the headers are acknowledged.
fn on_writable(
    epoll: &Epoll,
    token: u64,
    connection: &mut Connection,
    args: &Args,
) -> io::Result<()> {
    match connection.stream.write(connection.response.unsent()) {
        Ok(n) => connection.response.advance(n),
        Err(err) if is_transient(&err) => return Ok(()),
        // EPIPE or ECONNRESET: the client has gone.
        Err(err) => return Err(err),
    }
    if connection.response.is_done() {
        // (A refused, too large request is never followed by another.)
        if args.keep_alive && connection.request.is_complete() {
            return next_request(epoll, token, connection, args);
        }
        // Watch for nothing more (the kernel still reports EPOLLHUP and
        // EPOLLERR) and shut both directions down: the kernel sends FIN
        // after the response. Both directions shut means EPOLLHUP, and that
        // event closes the socket in `main`.
        let mut interest = EpollEvent::new(EpollFlags::empty(), token);
        epoll.modify(&connection.stream, &mut interest)?;
        connection.stream.shutdown(Shutdown::Both)?;
    }
    Ok(())
}
// ANCHOR_END: writable

// ANCHOR: keep_alive
/// `--keep-alive`: after a response, start on the connection's next request.
fn next_request(
    epoll: &Epoll,
    token: u64,
    connection: &mut Connection,
    args: &Args,
) -> io::Result<()> {
    connection.response = PendingResponse::in_two_sends();
    // The bytes read after the last request's end may hold the next one.
    let interest = match connection.request.finish_request() {
        Progress::Complete => {
            if !args.epoll.server.quiet {
                common::print_request(&connection.request);
            }
            EpollFlags::EPOLLOUT
        }
        // Incomplete: wait for its bytes. (Not TooLarge: what follows a
        // request is kept only up to the cap, so it reads as incomplete
        // here, and the next read decides.)
        _ => EpollFlags::EPOLLIN,
    };
    epoll.modify(&connection.stream, &mut EpollEvent::new(interest, token))?;
    Ok(())
}
// ANCHOR_END: keep_alive

/// `--trace`: show that an accepted socket inherited TCP_NODELAY.
fn trace_nodelay(stream: &TcpStream) {
    let nodelay = SockRef::from(stream).tcp_nodelay();
    let state = match nodelay {
        Ok(true) => "on",
        Ok(false) => "off",
        Err(_) => "unknown",
    };
    common::warn(format_args!(
        "fd {}: accepted, TCP_NODELAY {state}",
        stream.as_raw_fd()
    ));
}

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
