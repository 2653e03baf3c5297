//! Example 14: example 4 on mio.
//!
//! mio is the crate tokio is built on: a thin, portable layer over the
//! system's readiness API (epoll on Linux, kqueue on the BSDs and macOS).
//! This is example 4 with its epoll calls replaced by mio's, one for one:
//!
//! | mio                         | system call on Linux                        |
//! | --------------------------- | ------------------------------------------- |
//! | `Poll::new()`               | epoll_create1(EPOLL_CLOEXEC)                |
//! | `registry.register(..)`     | epoll_ctl(EPOLL_CTL_ADD)                    |
//! | `registry.reregister(..)`   | epoll_ctl(EPOLL_CTL_MOD)                    |
//! | `registry.deregister(..)`   | epoll_ctl(EPOLL_CTL_DEL)                    |
//! | `poll.poll(&mut events, t)` | epoll_wait                                  |
//! | `Interest::READABLE`        | EPOLLIN, EPOLLRDHUP, and always EPOLLET     |
//! | `Interest::WRITABLE`        | EPOLLOUT, and always EPOLLET                |
//! | `Token(n)`                  | the 64-bit `data` of each epoll_event       |
//! | `Waker::new(..)`            | eventfd(2), registered for EPOLLIN          |
//!
//! mio is edge-triggered only, so the rule of example 4 holds unchanged:
//! on each event, accept, read or write until the kernel says EAGAIN.
//!
//! New here: a Waker. The loop sleeps in epoll_wait, where only a watched fd
//! can reach it. A Waker is such an fd (an eventfd) that any thread can make
//! readable. Here the thread that waits for SIGINT and SIGTERM uses it to
//! stop the loop.
//!
//! Run it with `cargo run -p example14_mio`, then `curl
//! http://127.0.0.1:8080/`. Add `-- --trace` to see every event mio reports.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use clap::Parser;
use common::{ACCEPT_PAUSE, EpollArgs, PendingResponse, Progress, RequestBuffer, is_transient};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;

/// Example 14: example 4's edge-triggered server on mio (Poll, Registry,
/// Token, Interest, Events), stopped through a mio Waker. Stop it with
/// Ctrl-C (SIGINT) or SIGTERM: a second thread takes the signal and wakes
/// the loop, which closes its sockets and exits with status 0.
#[derive(Parser)]
#[command(version, mut_arg("trace", |arg| arg.help(
    "Print every event mio's poll returns, as its token (the socket's fd \
     number, or `waker`) and its readiness (`token 6: READABLE|READ_CLOSED`), \
     to stderr"
)))]
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

// ANCHOR: waker_token
/// The Waker's token. Sockets use their fd number, as in example 4; no fd
/// number comes near this one.
const WAKER: Token = Token(usize::MAX);
// ANCHOR_END: waker_token

// ANCHOR: main
fn main() -> common::MainResult {
    let args = Args::parse();
    // Block SIGINT and SIGTERM before anything else, so that from here on
    // they wait in a file descriptor (signalfd) instead of killing the
    // process. See common::signals. (Before the stop thread starts, too:
    // threads inherit the blocked set.)
    let stop = common::stop_signals()?;
    let listener = common::listen(&args.epoll.server)?;
    // O_NONBLOCK: accept(2) on this socket now fails with EAGAIN
    // (io::ErrorKind::WouldBlock) instead of waiting for a client. mio
    // assumes it of every socket it is handed, and does not set it.
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    // epoll tells us which file descriptor is ready by returning the 64-bit
    // token we registered it with. Like the Python, we use the fd number.
    let listener_token = token_of(&listener);

    // ANCHOR: setup
    // epoll_create1(2): a new epoll instance, itself a file descriptor. It
    // holds the interest list (what we watch) and the ready list (the
    // watched fds the kernel has found ready, for epoll_wait to hand out).
    // mio calls it a Poll, and the epoll_ctl side of it a Registry.
    let mut poll = Poll::new()?;
    // epoll_ctl(EPOLL_CTL_ADD): watch the listener for EPOLLIN, which on a
    // listening socket means "a connection is waiting in the accept queue".
    // mio adds EPOLLET to every registration (it has no level-triggered
    // mode), and EPOLLRDHUP to every READABLE one.
    poll.registry()
        .register(&mut listener, listener_token, Interest::READABLE)?;
    // Whether the listener is out of the interest list for a moment, after
    // accept(2) ran out of file descriptors (see `accept_all`).
    let mut accept_paused = false;

    // Stopping is one more event in the same loop, brought by another
    // thread: eventfd(2), registered for EPOLLIN under the token WAKER.
    // The stop thread's `wake` adds 1 to the eventfd's counter, which makes
    // it readable: an edge, and epoll_wait returns WAKER.
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    wake_on_stop_signal(stop, Arc::clone(&waker))?;
    // ANCHOR_END: setup

    let mut connections: HashMap<Token, Connection> = HashMap::new();
    let mut events = Events::with_capacity(64);
    loop {
        // ANCHOR: wait
        // epoll_wait(2): sleep until at least one watched fd is ready, and
        // fill `events` with up to 64 of them. No timeout, except while
        // accepting is paused. SIGINT and SIGTERM do not interrupt the
        // wait (they are blocked in every thread, and wait in the
        // signalfd), but a stop and continue does (Ctrl-Z, then fg): EINTR
        // (signal(7)), which mio returns as an error. Just wait again.
        let timeout = accept_paused.then_some(ACCEPT_PAUSE);
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err.into()),
        }
        if accept_paused {
            resume_accepting(poll.registry(), &mut listener, listener_token)?;
            accept_paused = false;
        }
        // ANCHOR_END: wait

        for event in &events {
            let token = event.token();
            if args.epoll.trace {
                trace(event);
            }

            if token == WAKER {
                // Returning drops the connections, the Poll and the
                // listener: every fd is closed, as the Python's `finally`
                // blocks do.
                return Ok(());
            }
            // ANCHOR: accept
            if token == listener_token {
                // Edge-triggered: this one event may stand for many queued
                // clients, and no second event comes for them. Accept until
                // the queue is empty.
                accept_paused = accept_all(poll.registry(), &mut listener, &mut connections)?;
                continue;
            }
            // ANCHOR_END: accept

            let Some(connection) = connections.get_mut(&token) else {
                continue;
            };
            // ANCHOR: dispatch
            let outcome = if event.is_readable() {
                on_readable(poll.registry(), token, connection, args.epoll.server.quiet)
            } else if event.is_writable() {
                on_writable(connection)
            } else {
                // EPOLLHUP or EPOLLERR alone: the kernel reports these
                // whatever we asked for.
                Err(io::ErrorKind::ConnectionAborted.into())
            };
            // A connection whose response is out is finished. Example 4
            // waits for the EPOLLHUP its shutdown causes; mio cannot leave a
            // socket registered for no event at all, and that EPOLLHUP
            // would come at once anyway: close it now.
            if outcome.is_err() || connection.response.is_done() {
                close(poll.registry(), &mut connections, token);
            }
            // ANCHOR_END: dispatch
        }
    }
}
// ANCHOR_END: main

/// The token of a socket: its fd number, as in example 4.
fn token_of(socket: &impl AsRawFd) -> Token {
    Token(socket.as_raw_fd() as usize)
}

// ANCHOR: stop_thread
/// Starts the thread that stops the server: it sleeps until SIGINT or
/// SIGTERM is pending, then wakes the loop through the Waker.
///
/// The loop cannot be reached any other way while it sleeps in
/// epoll_wait: only an fd in its interest list wakes it, and the Waker's
/// eventfd is one that any thread can make readable.
fn wake_on_stop_signal(stop: SignalFd, waker: Arc<Waker>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("stop".into())
        .spawn(move || {
            // poll(2) on the signalfd: sleep until a stop signal is pending.
            // poll does not take the signal (a read would), so it stays
            // pending for common::output, which gives up a write to a full
            // stdout when a stop signal is pending: the loop may be stuck
            // printing when the signal comes.
            let mut signals = [PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
            while let Err(Errno::EINTR) = nix::poll::poll(&mut signals, PollTimeout::NONE) {}
            // write(2) of 1 to the eventfd: the loop wakes with WAKER.
            if let Err(err) = waker.wake() {
                common::warn(format_args!("cannot wake the loop: {err}"));
            }
        })?;
    Ok(())
}
// ANCHOR_END: stop_thread

// ANCHOR: accept_all
/// Takes every queued client off the listener. Returns true when accept(2)
/// failed for a lasting reason (out of file descriptors, above all) and
/// accepting is paused: the listener is then out of the interest list, and
/// the loop must call [`resume_accepting`] after its next wait.
///
/// Example 4's `common::Acceptor` pauses with epoll_ctl(EPOLL_CTL_MOD) to
/// no events. mio cannot: an `Interest` is never empty. So the listener
/// leaves the interest list (EPOLL_CTL_DEL) and comes back later
/// (EPOLL_CTL_ADD), which makes the kernel check the queue afresh.
fn accept_all(
    registry: &Registry,
    listener: &mut TcpListener,
    connections: &mut HashMap<Token, Connection>,
) -> io::Result<bool> {
    loop {
        // accept4(2) with SOCK_NONBLOCK|SOCK_CLOEXEC: the new socket is
        // non-blocking from the start: one system call fewer than example
        // 4, whose set_nonblocking is an ioctl(FIONBIO).
        match listener.accept() {
            Ok((stream, _address)) => register(registry, connections, stream),
            // EAGAIN: the queue is empty; the next client makes an edge.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // This client is gone (ECONNABORTED, ...): take the next.
            Err(err) if common::concerns_one_client(&err) => {
                common::warn(format_args!("accept failed: {err}"));
            }
            // EMFILE and the like: the client stays queued, and retrying now
            // would fail again. epoll_ctl(EPOLL_CTL_DEL): no event wakes the
            // loop for the listener until it is registered again.
            Err(err) => {
                common::warn(format_args!("accept failed, pausing: {err}"));
                registry.deregister(listener)?;
                return Ok(true);
            }
        }
    }
}

/// Watches the listener again after a pause (epoll_ctl(EPOLL_CTL_ADD)).
/// The kernel checks readiness as it adds the entry: clients that queued up
/// during the pause are reported by the next wait, edge-triggered or not.
/// If descriptors are still short, that accept fails and pauses again.
fn resume_accepting(
    registry: &Registry,
    listener: &mut TcpListener,
    token: Token,
) -> io::Result<()> {
    registry.register(listener, token, Interest::READABLE)
}
// ANCHOR_END: accept_all

// ANCHOR: register
/// Starts watching a newly accepted connection (already non-blocking: see
/// `accept_all`).
fn register(
    registry: &Registry,
    connections: &mut HashMap<Token, Connection>,
    mut stream: TcpStream,
) {
    let token = token_of(&stream);
    // Watch for EPOLLIN, edge-triggered: an event each time new bytes of
    // the request arrive (or the client closes, which reads as 0 bytes).
    // Bytes already here when we register count as an edge too.
    match registry.register(&mut stream, token, Interest::READABLE) {
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
    registry: &Registry,
    token: Token,
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
    registry.reregister(&mut connection.stream, token, Interest::WRITABLE)
}
// ANCHOR_END: readable

// ANCHOR: writable
/// EPOLLOUT: send until the response is gone or the send buffer is full.
fn on_writable(connection: &mut Connection) -> io::Result<()> {
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
    // Shut both directions down: the kernel sends FIN after the response.
    // The loop then closes the socket.
    connection.stream.shutdown(Shutdown::Both)
}
// ANCHOR_END: writable

// ANCHOR: close
/// Forgets a client: stop watching its socket, then close it.
fn close(registry: &Registry, connections: &mut HashMap<Token, Connection>, token: Token) {
    if let Some(mut connection) = connections.remove(&token) {
        // epoll_ctl(EPOLL_CTL_DEL). Closing the fd would also remove it from
        // the interest list, but only if no other fd refers to the same
        // socket: saying so explicitly is always right. (mio's sockets do
        // not deregister themselves when dropped.)
        let _ = registry.deregister(&mut connection.stream);
        // `connection` is dropped here: close(2), exactly once.
    }
}
// ANCHOR_END: close

/// Prints one event for `--trace`: its token and the readiness mio derives
/// from the epoll flags (READABLE is EPOLLIN, READ_CLOSED is EPOLLHUP, or
/// EPOLLIN with EPOLLRDHUP, and so on: see mio's epoll selector).
fn trace(event: &Event) {
    let readiness = [
        (event.is_readable(), "READABLE"),
        (event.is_writable(), "WRITABLE"),
        (event.is_read_closed(), "READ_CLOSED"),
        (event.is_write_closed(), "WRITE_CLOSED"),
        (event.is_error(), "ERROR"),
    ];
    let names: Vec<&str> = readiness
        .iter()
        .filter_map(|&(set, name)| set.then_some(name))
        .collect();
    let token = match event.token() {
        WAKER => "waker".to_owned(),
        Token(n) => format!("token {n}"),
    };
    let line = format!("{token}: {}\n", names.join("|"));
    common::output::write_stderr(line.as_bytes());
}
