//! Example 11: timeouts.
//!
//! Example 4 serves a client that never finishes its request for ever: a
//! thousand such clients hold a thousand file descriptors (the "slowloris"
//! attack, which trickles a byte now and then so that the connection never
//! looks idle).
//! Here every connection gets a deadline when it is accepted: if its request
//! is not complete by then, the server closes it without an answer, as
//! nginx does when its `client_header_timeout` runs out.
//!
//! The deadlines wait in a queue, and the queue sets epoll_wait(2)'s
//! timeout: the loop sleeps until a socket is ready *or* the first deadline
//! comes, whichever is sooner. Every deadline is the same length after its
//! accept, so the queue is in order by construction: the first entry is
//! the soonest, new ones go at the back, and expiring looks at the front
//! only. Nothing here walks over every connection.
//!
//! Run it with `cargo run -p example11_timeouts -- --request-timeout 5`,
//! then `time nc -d 127.0.0.1 8080` (`-d`: send nothing): after 5 seconds
//! the server closes the connection, and nc exits. Add `--trace` to see
//! every event epoll reports, and every timeout.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use clap::Parser;
use common::{EpollArgs, PendingResponse, Progress, RequestBuffer, is_transient, token_of};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Example 11: example 4 (edge-triggered epoll) with a request timeout. A
/// client whose request is not complete within --request-timeout of its
/// connection is closed. Stop it with Ctrl-C (SIGINT) or SIGTERM: it closes
/// its sockets and exits with status 0.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    epoll: EpollArgs,

    /// Seconds a client has, from the moment its connection is accepted,
    /// to send a complete request. Past it the connection is closed without
    /// an answer, as nginx's client_header_timeout does; bytes that trickle
    /// in do not extend it. Fractions such as 0.5 are allowed; at most one
    /// day. With --trace, each timeout is printed too.
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = seconds)]
    request_timeout: Duration,
}

/// Parses `--request-timeout`: a number of seconds, more than 0 and at most
/// a day (so that accept time plus timeout can never overflow).
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("not a number: {text}"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("must be more than 0 and at most 86400: {text}"));
    }
    Ok(Duration::from_secs_f64(secs))
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
    /// Which accepted connection this is: 1 for the first, 2 for the next.
    /// The token (the fd number) cannot say: the kernel hands a closed fd's
    /// number to the next socket it opens.
    serial: u64,
}
// ANCHOR_END: connection

// ANCHOR: deadline
/// A moment by which a connection must have sent its whole request.
///
/// The queue of these is never searched or sorted. Each is pushed at the
/// back when its connection is accepted, `--request-timeout` after the
/// accept; times from `Instant` (the CLOCK_MONOTONIC clock, which neither
/// jumps nor goes back when someone sets the date) never decrease, so the
/// queue is in deadline order from front to back.
///
/// A connection that completes its request, or closes, leaves its entry
/// behind: removing it from the middle of the queue would cost a search.
/// The entry goes stale instead, and is dropped when it reaches the front.
/// `token` and `serial` together name the connection it was made for, so
/// a stale entry can never close a newer connection that got the same fd.
struct Deadline {
    at: Instant,
    token: u64,
    serial: u64,
}
// ANCHOR_END: deadline

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
    // Oldest first; see `Deadline`.
    let mut deadlines: VecDeque<Deadline> = VecDeque::new();
    let mut accepted: u64 = 0;
    let mut events = [EpollEvent::empty(); 64];
    loop {
        // ANCHOR: wait
        // Close the connections whose deadline has passed, and learn how
        // long the next one is away. Done before every wait: a wait must
        // never sleep past a deadline.
        let next = expire(&epoll, &mut connections, &mut deadlines, args.epoll.trace);
        // epoll_wait(2): sleep until at least one watched fd is ready, or
        // until the timeout, and fill `events` with up to 64 of them. The
        // timeout is the time to the next deadline (or the end of an accept
        // pause, if sooner); with no deadline pending, none. Returning 0
        // events means the time is up: `expire` finds the work at the top
        // of the loop. SIGINT and SIGTERM do not interrupt the wait (they
        // are blocked, and wait in the signalfd), but a stop and continue
        // does (Ctrl-Z, then fg): EINTR (signal(7)), which nix returns as an
        // error. Just wait again.
        let ready = match epoll.wait(&mut events, wait_timeout(next, &acceptor)) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        };
        // ANCHOR_END: wait
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
                    accepted += 1;
                    if let Some(token) = register(&epoll, &mut connections, stream, accepted) {
                        // Its deadline goes to the back of the queue: no
                        // deadline in it is later than this one.
                        deadlines.push_back(Deadline {
                            at: Instant::now() + args.request_timeout,
                            token,
                            serial: accepted,
                        });
                    }
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
/// Returns its token, or None if it could not be watched (and is closed).
fn register(
    epoll: &Epoll,
    connections: &mut HashMap<u64, Connection>,
    stream: TcpStream,
    serial: u64,
) -> Option<u64> {
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
                serial,
            };
            connections.insert(token, connection);
            Some(token)
        }
        // Dropping the stream closes it: the client sees its connection end.
        Err(err) => {
            common::warn(format_args!("cannot watch a new connection: {err}"));
            None
        }
    }
}
// ANCHOR_END: register

// ANCHOR: expire
/// Closes every connection whose deadline has passed, and drops the stale
/// deadlines at the front of the queue. Returns how long until the first
/// deadline still pending, or None if there is none.
///
/// It looks at the front of the queue only, and stops at the first
/// deadline still to come: every one behind it is later. So a wakeup costs
/// one look at the queue, plus one step per deadline it takes off, never a
/// step per connection waiting: each entry is taken off once.
fn expire(
    epoll: &Epoll,
    connections: &mut HashMap<u64, Connection>,
    deadlines: &mut VecDeque<Deadline>,
    trace: bool,
) -> Option<Duration> {
    // clock_gettime(CLOCK_MONOTONIC), through the vDSO: no system call.
    let now = Instant::now();
    while let Some(first) = deadlines.front() {
        match connections.get(&first.token) {
            // The connection this deadline was made for, still waiting for
            // the end of its request.
            Some(connection)
                if connection.serial == first.serial
                    && connection.request.progress() == Progress::Incomplete =>
            {
                if first.at > now {
                    return Some(first.at - now);
                }
                if trace {
                    let line = format!("fd {}: request timeout, closed\n", first.token);
                    common::output::write_stderr(line.as_bytes());
                }
                close(epoll, connections, first.token);
            }
            // Stale: the request is complete (the response is being sent),
            // or the connection has closed, its fd perhaps reused by a
            // newer connection with a deadline of its own further back.
            // Either way there is nothing to do but forget it, at once,
            // whatever its time: it must not hold up the queue.
            _ => {}
        }
        deadlines.pop_front();
    }
    None
}
// ANCHOR_END: expire

// ANCHOR: wait_timeout
/// epoll_wait(2)'s timeout: the time until the next deadline, or until the
/// end of an accept pause if that is sooner; none (wait for ever) if there
/// is neither.
///
/// epoll_wait counts in whole milliseconds and sleeps *at least* as long as
/// asked (epoll_wait(2): "rounded up to the system clock granularity").
/// So round up too: a wait of 0 ms for a deadline 0.4 ms away would return
/// at once, find nothing due, and wait 0 ms again, spinning until the
/// deadline; a wait of 1 ms wakes just after it.
fn wait_timeout(next_deadline: Option<Duration>, acceptor: &common::Acceptor) -> EpollTimeout {
    let pause = acceptor.is_paused().then_some(common::ACCEPT_PAUSE);
    match [next_deadline, pause].into_iter().flatten().min() {
        None => EpollTimeout::NONE,
        Some(wait) => {
            let ms = wait.as_nanos().div_ceil(1_000_000);
            EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
        }
    }
}
// ANCHOR_END: wait_timeout

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
