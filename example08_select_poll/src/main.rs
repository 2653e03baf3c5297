//! Example 8: example 3's server with select(2) or poll(2) instead of epoll.
//!
//! The HOWTO says epoll beats poll, and poll beats select. This program lets
//! you see why: it is example 3, the level-triggered server, with the one
//! call that waits replaced. `--poller select` or `--poller poll` chooses
//! which; everything else (accepting, reading a request, writing the
//! response) is shared, so the two waits can be read side by side.
//!
//! What the three calls cost, per wait, with N connections:
//!
//! - select(2) takes three bitmaps of FD_SETSIZE (1024) bits, for reading,
//!   writing and errors. The program fills them on every call (the kernel
//!   overwrites them with the answer), the kernel checks every fd up to the
//!   highest, and the program scans the bitmaps for the ready ones: O(N)
//!   three times. Worse, an fd of 1024 or more does not fit in the bitmap at
//!   all: select cannot watch it. In C, FD_SET with such an fd is undefined
//!   behaviour (select(2), NOTES): unchecked, it writes past the bitmap;
//!   in a program compiled with -D_FORTIFY_SOURCE and optimisation, glibc's
//!   check (__fdelt_chk) aborts it. nix's `insert` panics. This server
//!   refuses such a connection instead.
//! - poll(2) takes an array of (fd, events) pairs, as long as it needs to
//!   be: no 1024 limit. But the array is still passed in full on every call,
//!   the kernel still checks every entry, and the program still scans every
//!   entry for the answer: O(N) each time.
//! - epoll (examples 3 to 6) keeps the interest list inside the kernel, set
//!   up once per connection with epoll_ctl(2); epoll_wait(2) returns only
//!   the ready fds. A wait costs O(ready), however many connections idle.
//!
//! Run it with `cargo run -p example08_select_poll -- --poller select`, then
//! `curl http://127.0.0.1:8080/`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use clap::{Parser, ValueEnum};
use common::{ACCEPT_PAUSE, PendingResponse, Progress, RequestBuffer, ServerArgs, is_transient};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::select::{FD_SETSIZE, FdSet, select};
use nix::sys::signalfd::SignalFd;
use nix::sys::time::{TimeVal, TimeValLike};

/// Example 8: serve many clients from one thread, like example 3, but wait
/// with select(2) or poll(2) instead of epoll. Stop it with Ctrl-C (SIGINT)
/// or SIGTERM: it closes its sockets and exits with status 0.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    /// The system call that waits for sockets to be ready. With select, a
    /// connection whose file descriptor is 1024 (FD_SETSIZE) or more is
    /// answered 503 and closed: select cannot watch it.
    #[arg(long, value_enum, default_value_t = Poller::Poll)]
    poller: Poller,
}

/// The two older ways to wait for many file descriptors at once.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Poller {
    /// select(2): bitmaps of at most 1024 fds (4.2BSD, 1983).
    Select,
    /// poll(2): an array of (fd, events) of any length (System V, 1986).
    Poll,
}

/// Where a connection stands. epoll keeps this in its interest list (what
/// example 3 passes to `modify`); select and poll keep nothing between
/// calls, so the program remembers it and says it again at every wait.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Collecting the request: wait until the socket is readable.
    Reading,
    /// Sending the response: wait until the socket is writable.
    Writing,
    /// Response sent, both directions shut: wait for the hang-up, then close.
    Closing,
}

/// What the server holds for one client (example 3's, plus its stage).
struct Connection {
    stream: TcpStream,
    request: RequestBuffer,
    response: PendingResponse,
    stage: Stage,
}

/// What one wait said about one file descriptor.
struct Ready {
    fd: RawFd,
    readable: bool,
    writable: bool,
    /// Hang-up or error (poll's POLLHUP, POLLERR, POLLNVAL). select has no
    /// such answer: it reports a hung-up socket as readable.
    hangup: bool,
}

/// Everything the loop owns.
struct Server {
    poller: Poller,
    quiet: bool,
    listener: TcpListener,
    stop: SignalFd,
    connections: HashMap<RawFd, Connection>,
    /// accept(2) ran out of descriptors: leave the listener out of the next
    /// wait (see example 3).
    accept_paused: bool,
}

/// The answer to a connection this server cannot watch.
const UNAVAILABLE: &[u8] = b"HTTP/1.0 503 Service Unavailable\r\n\
Content-Type: text/plain\r\n\
Content-Length: 21\r\n\
\r\n\
Too many connections\n";

// ANCHOR: main
fn main() -> common::MainResult {
    let args = Args::parse();
    // SIGINT and SIGTERM wait in a signalfd, watched like any socket.
    let stop = common::stop_signals()?;
    let listener = common::listen(&args.server)?;
    // O_NONBLOCK: accept(2) fails with EAGAIN instead of waiting.
    listener.set_nonblocking(true)?;
    let mut server = Server {
        poller: args.poller,
        quiet: args.server.quiet,
        listener,
        stop,
        connections: HashMap::new(),
        accept_paused: false,
    };

    loop {
        // The only difference between the two pollers: how they wait.
        let waited = match server.poller {
            Poller::Select => wait_select(&server),
            Poller::Poll => wait_poll(&server),
        };
        let ready = match waited {
            Ok(ready) => ready,
            // A signal interrupted the wait (nix does not retry): again.
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        };
        // After a pause, the listener is in the next wait again.
        server.accept_paused = false;
        for event in ready {
            if event.fd == server.stop.as_raw_fd() {
                // Returning drops every connection, the listener and the
                // signalfd: every fd is closed.
                return Ok(());
            }
            server.dispatch(&event);
        }
    }
}
// ANCHOR_END: main

// ANCHOR: select
/// Waits with select(2): fill the bitmaps, wait, scan the bitmaps.
fn wait_select(server: &Server) -> nix::Result<Vec<Ready>> {
    // An FdSet is a bitmap of FD_SETSIZE bits, one per possible fd. The
    // kernel overwrites it with the answer, so it is rebuilt for every call:
    // O(connections) before the system call even starts.
    let mut readable = FdSet::new();
    let mut writable = FdSet::new();
    // nix's `insert` panics on an fd of FD_SETSIZE or more, where C's FD_SET
    // would write past the bitmap. `register` never keeps such a connection.
    readable.insert(server.stop.as_fd());
    if !server.accept_paused {
        readable.insert(server.listener.as_fd());
    }
    for connection in server.connections.values() {
        let fd = connection.stream.as_fd();
        match connection.stage {
            // A hung-up socket reads as end of stream, so select reports it
            // readable: that is how a Closing connection learns it is done.
            Stage::Reading | Stage::Closing => readable.insert(fd),
            Stage::Writing => writable.insert(fd),
        }
    }
    let mut pause = TimeVal::milliseconds(ACCEPT_PAUSE.as_millis() as i64);
    let timeout = server.accept_paused.then_some(&mut pause);
    // select(2): the first argument is the highest fd plus one (nix works
    // it out); the kernel looks at every fd below it, in every set.
    select(None, &mut readable, &mut writable, None, timeout)?;

    // The answer is the same bitmaps, with only the ready bits left set.
    // Finding them means looking at every bit again.
    let mut ready = Vec::new();
    for fd in readable.fds(None) {
        ready.push(Ready {
            fd: fd.as_raw_fd(),
            readable: true,
            writable: false,
            hangup: false,
        });
    }
    for fd in writable.fds(None) {
        ready.push(Ready {
            fd: fd.as_raw_fd(),
            readable: false,
            writable: true,
            hangup: false,
        });
    }
    Ok(ready)
}
// ANCHOR_END: select

// ANCHOR: poll
/// Waits with poll(2): build the array, wait, scan the array.
fn wait_poll(server: &Server) -> nix::Result<Vec<Ready>> {
    // One pollfd { fd, events, revents } per watched fd. No limit on the fd
    // numbers, but the whole array is copied into the kernel on every call.
    let mut watched = Vec::with_capacity(server.connections.len() + 2);
    watched.push(PollFd::new(server.stop.as_fd(), PollFlags::POLLIN));
    if !server.accept_paused {
        watched.push(PollFd::new(server.listener.as_fd(), PollFlags::POLLIN));
    }
    for connection in server.connections.values() {
        let events = match connection.stage {
            Stage::Reading => PollFlags::POLLIN,
            Stage::Writing => PollFlags::POLLOUT,
            // Nothing: poll reports POLLHUP and POLLERR whatever we ask,
            // as epoll does for example 3's `modify(fd, 0)`.
            Stage::Closing => PollFlags::empty(),
        };
        watched.push(PollFd::new(connection.stream.as_fd(), events));
    }
    let timeout = if server.accept_paused {
        PollTimeout::try_from(ACCEPT_PAUSE).expect("100 ms fits a poll timeout")
    } else {
        PollTimeout::NONE
    };
    // poll(2): the kernel checks every entry and fills in its `revents`.
    poll(&mut watched, timeout)?;

    // The program checks every entry again to find the few that are ready.
    let ready = watched
        .iter()
        .filter_map(|entry| {
            let revents = entry.revents().filter(|revents| !revents.is_empty())?;
            Some(Ready {
                fd: entry.as_fd().as_raw_fd(),
                readable: revents.contains(PollFlags::POLLIN),
                writable: revents.contains(PollFlags::POLLOUT),
                hangup: revents
                    .intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL),
            })
        })
        .collect();
    Ok(ready)
}
// ANCHOR_END: poll

impl Server {
    // ANCHOR: dispatch
    /// Acts on what a wait said about one fd: example 3's event loop body.
    fn dispatch(&mut self, event: &Ready) {
        if event.fd == self.listener.as_raw_fd() {
            // Level-triggered, as in example 3: one accept per wakeup; if
            // more clients are queued, the next wait reports the listener
            // again.
            match self.listener.accept() {
                Ok((stream, _address)) => self.register(stream),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) if common::concerns_one_client(&err) => {
                    common::warn(format_args!("accept failed: {err}"));
                }
                Err(err) => {
                    // Out of descriptors: leave the listener out of the next
                    // wait, which then lasts at most ACCEPT_PAUSE.
                    common::warn(format_args!("accept failed, pausing: {err}"));
                    self.accept_paused = true;
                }
            }
            return;
        }

        let Some(connection) = self.connections.get_mut(&event.fd) else {
            return;
        };
        let outcome = match connection.stage {
            Stage::Reading if event.readable => on_readable(connection, self.quiet),
            Stage::Writing if event.writable => on_writable(connection),
            // Our shutdown has been seen: the hang-up we waited for.
            Stage::Closing if event.readable || event.hangup => {
                Err(io::ErrorKind::ConnectionAborted.into())
            }
            _ if event.hangup => Err(io::ErrorKind::ConnectionAborted.into()),
            // Readiness we did not ask for: a stale report about an fd
            // number that was closed and reused within this round.
            _ => Ok(()),
        };
        if outcome.is_err() {
            // Removing the entry drops the stream: close(2). There is no
            // interest list to leave: the next wait simply omits the fd.
            self.connections.remove(&event.fd);
        }
    }
    // ANCHOR_END: dispatch

    // ANCHOR: register
    /// Keeps a newly accepted connection, if the poller can watch it.
    fn register(&mut self, stream: TcpStream) {
        let fd = stream.as_raw_fd();
        if self.poller == Poller::Select && fd as usize >= FD_SETSIZE {
            // select's bitmaps have no bit for this fd. Refuse the client,
            // loudly, rather than watch it wrongly or not at all.
            refuse(
                stream,
                format_args!(
                    "fd {fd} is at or above FD_SETSIZE ({FD_SETSIZE}), which select(2) cannot watch"
                ),
            );
            return;
        }
        if let Err(err) = stream.set_nonblocking(true) {
            common::warn(format_args!("cannot make a connection non-blocking: {err}"));
            return;
        }
        let connection = Connection {
            stream,
            request: RequestBuffer::new(),
            response: PendingResponse::whole(),
            stage: Stage::Reading,
        };
        self.connections.insert(fd, connection);
    }
    // ANCHOR_END: register
}

/// Answers 503 and closes. The socket is new and still blocking, and its
/// send buffer empty: this short write completes at once. (A request the
/// client already sent is never read, so the close may reach it as a reset:
/// see example 7's `refuse`.)
fn refuse(mut stream: TcpStream, why: std::fmt::Arguments<'_>) {
    let _ = stream.write_all(UNAVAILABLE);
    // Closed before the message: once it is printed, the fd is free again.
    drop(stream);
    common::warn(format_args!("refused a connection: {why}"));
}

// ANCHOR: readable
/// Readable: read what has arrived, once (example 3's `on_readable`).
fn on_readable(connection: &mut Connection, quiet: bool) -> io::Result<()> {
    let mut buffer = [0u8; 1024];
    let n = match connection.stream.read(&mut buffer) {
        // The client closed before its request was complete. Level-triggered
        // waits would report this forever: give up on the client.
        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(n) => n,
        Err(err) if is_transient(&err) => return Ok(()),
        Err(err) => return Err(err),
    };
    match connection.request.push(&buffer[..n]) {
        Progress::Incomplete => return Ok(()),
        Progress::Complete => {
            if !quiet {
                common::print_request(&connection.request);
            }
        }
        Progress::TooLarge => connection.response = PendingResponse::too_large(),
    }
    // Where example 3 calls epoll_ctl(EPOLL_CTL_MOD), we only change our
    // own note: the next wait asks about writing instead.
    connection.stage = Stage::Writing;
    Ok(())
}
// ANCHOR_END: readable

// ANCHOR: writable
/// Writable: send what the kernel will take, once.
fn on_writable(connection: &mut Connection) -> io::Result<()> {
    match connection.stream.write(connection.response.unsent()) {
        Ok(n) => connection.response.advance(n),
        Err(err) if is_transient(&err) => return Ok(()),
        Err(err) => return Err(err),
    }
    if connection.response.is_done() {
        // As example 3: shut both directions (the kernel sends FIN after the
        // response) and close when the hang-up is reported.
        connection.stream.shutdown(Shutdown::Both)?;
        connection.stage = Stage::Closing;
    }
    Ok(())
}
// ANCHOR_END: writable
