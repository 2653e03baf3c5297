//! Example 13: every core.
//!
//! Examples 3 to 10 serve every client from one thread, so from one core.
//! This server runs `--workers N` threads (one per CPU by default), each
//! with an epoll instance of its own, and `--balance` chooses how a new
//! connection reaches one of them:
//!
//! - `shared`: one listening socket, in every worker's epoll. A new
//!   connection wakes every worker that is waiting; one wins accept(2), the
//!   others find the queue empty. That is the thundering herd.
//! - `exclusive`: the same socket, registered with EPOLLEXCLUSIVE: the
//!   kernel wakes one waiting worker (or a few) instead of all of them.
//! - `reuseport` (the default): a listening socket per worker, all bound to
//!   the same port with SO_REUSEPORT. The kernel picks one of them for each
//!   new connection, by a hash of its addresses and ports, and queues the
//!   connection there: each worker accepts only its own.
//!
//! On Ctrl-C or SIGTERM every worker stops, and the server prints a line
//! per worker to stderr, `worker W: accepted A, wakeups K, empty E`: how
//! many connections it accepted, how many times the kernel woke it from its
//! sleep in epoll_wait, and how many of those wakeups found nothing for it
//! to do (another worker had taken the connection).
//!
//! Each request also takes the shortest path this book knows: accept4(2)
//! makes the socket non-blocking as it creates it; the request is read at
//! once, before the socket is ever put in an epoll interest list; the
//! response is written in one write(2) as soon as the request is complete;
//! and close(2) follows at once. epoll hears of a connection only when its
//! client is slower than that.
//!
//! Run it with `cargo run -p example13_many_cores`, then `curl
//! http://127.0.0.1:8080/`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use common::{Acceptor, EpollArgs, PendingResponse, Progress, RequestBuffer, is_transient};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use socket2::{Domain, Protocol, Socket, Type};

/// Example 13: the "Hello, world!" server on every core, with a worker
/// thread per CPU, each with its own epoll instance. Stop it with Ctrl-C
/// (SIGINT) or SIGTERM: it prints a line per worker to stderr (`worker W:
/// accepted A, wakeups K, empty E`) and exits with status 0.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    epoll: EpollArgs,

    /// Worker threads, each with its own epoll instance [default: the
    /// number of CPUs this process may run on].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,

    /// How new connections reach the workers.
    #[arg(long, value_enum, default_value_t = Balance::Reuseport)]
    balance: Balance,

    /// With `--balance reuseport`: join another server of this user that
    /// already listens on the port with SO_REUSEPORT, instead of refusing
    /// the busy port. The kernel then shares new connections between the
    /// two servers, so a new one can take over from an old one without
    /// the port ever being closed.
    #[arg(long)]
    share_port: bool,

    /// Accept each connection and close it at once, without reading or
    /// answering (clients see a reset): the kernel's own work per
    /// connection, as a floor for measurements.
    #[arg(long)]
    accept_only: bool,

    /// TCP_DEFER_ACCEPT: the kernel hands a new connection to accept(2)
    /// only once its first bytes have arrived, or after about this many
    /// seconds of silence. 0 hands it over at once, as the other examples
    /// do.
    #[arg(long, value_name = "SECONDS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(0..=3600))]
    defer_accept: u16,
}

// ANCHOR: balance
/// How a new connection reaches a worker.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Balance {
    /// One listening socket in every worker's epoll: every waiting worker
    /// is woken for each new connection, one of them wins it.
    Shared,
    /// One listening socket, registered with EPOLLEXCLUSIVE: the kernel
    /// wakes one waiting worker, or a few.
    Exclusive,
    /// A listening socket per worker, all on one port (SO_REUSEPORT): the
    /// kernel hashes each new connection to one socket's queue.
    Reuseport,
}
// ANCHOR_END: balance

/// The tokens of the two fds that are not connections. A connection's
/// token is its fd number, which is never this large.
const LISTENER: u64 = u64::MAX;
const STOP: u64 = u64::MAX - 1;

// ANCHOR: main
fn main() -> common::MainResult {
    let args = Args::parse();
    // Block SIGINT and SIGTERM before any thread exists: the workers
    // inherit the blocked set, so a stop signal waits in the signalfd
    // instead of killing the process.
    let stop = common::stop_signals()?;
    let workers = match args.workers {
        Some(n) => usize::from(n),
        // sched_getaffinity(2): the CPUs this process may run on.
        None => thread::available_parallelism().map_or(1, usize::from),
    };
    let listeners = open_listeners(&args, workers)?;

    // Each worker's epoll instance is made and filled here, in worker
    // order: with EPOLLEXCLUSIVE, that order is the order in which the
    // kernel offers new connections to the waiting workers.
    let interest = match args.balance {
        Balance::Shared | Balance::Reuseport => EpollFlags::EPOLLIN,
        Balance::Exclusive => EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE,
    };
    let mut crew = Vec::with_capacity(workers);
    for index in 0..workers {
        // `shared` and `exclusive` have one listener for all; `reuseport`
        // one each.
        let listener = &listeners[index % listeners.len()];
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        // Level-triggered (no EPOLLET): a worker that takes one client
        // and leaves others queued is told again at its next wait.
        epoll.add(listener, EpollEvent::new(interest, LISTENER))?;
        // Every worker watches the same signalfd, and none reads it: a
        // pending signal keeps it readable, so it stops them all.
        epoll.add(&stop, EpollEvent::new(EpollFlags::EPOLLIN, STOP))?;
        crew.push(Worker {
            index,
            epoll,
            listener,
            acceptor: Acceptor::new(interest, LISTENER),
            connections: HashMap::new(),
            counts: Counts::default(),
        });
    }

    // Scoped threads may borrow the listeners; the scope ends when every
    // worker has returned.
    let args = &args;
    let outcomes: Vec<anyhow::Result<Counts>> = thread::scope(|scope| {
        let running: Vec<_> = crew
            .into_iter()
            .map(|worker| {
                thread::Builder::new()
                    .name(format!("worker-{}", worker.index))
                    .spawn_scoped(scope, move || {
                        let outcome = worker.run(args);
                        if outcome.is_err() {
                            // A worker that cannot go on stops the others
                            // the way Ctrl-C does: kill(2) to this process.
                            let _ = kill(Pid::this(), Signal::SIGTERM);
                        }
                        outcome
                    })
            })
            .collect();
        // A thread can fail to start (pthread_create(3): EAGAIN, out of
        // memory for its stack, or at RLIMIT_NPROC: `--workers 1024` on a
        // small machine). The workers already running stop as above, or
        // the scope would wait for them for ever.
        if running.iter().any(Result::is_err) {
            let _ = kill(Pid::this(), Signal::SIGTERM);
        }
        running
            .into_iter()
            .map(|spawned| {
                let worker = spawned.context("cannot start a worker thread")?;
                Ok(worker.join().expect("a worker panicked")?)
            })
            .collect()
    });

    // From here on, print only what stderr takes at once: if nobody reads
    // it, the server must still exit.
    common::output::stopping();
    let mut failure = None;
    for (index, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(counts) => common::output::write_stderr(
                format!(
                    "worker {index}: accepted {}, wakeups {}, empty {}\n",
                    counts.accepted, counts.wakeups, counts.empty
                )
                .as_bytes(),
            ),
            Err(err) => failure = Some(err),
        }
    }
    match failure {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}
// ANCHOR_END: main

// ANCHOR: listeners
/// Opens the listening sockets and prints `listening on IP:PORT`: one for
/// `shared` and `exclusive`, one per worker for `reuseport`.
fn open_listeners(args: &Args, workers: usize) -> anyhow::Result<Vec<TcpListener>> {
    let server = &args.epoll.server;
    match args.balance {
        Balance::Shared | Balance::Exclusive => {
            let listener = common::listen_with(server, |socket| options(socket, args))?;
            Ok(vec![listener])
        }
        Balance::Reuseport => {
            // SO_REUSEPORT lets any socket of the same user with the option
            // bind this port, a second copy of this server too, without a
            // word; the kernel would then share the clients between them.
            // Unless asked to (`--share-port`), make sure the port is free
            // first, with a plain bind that fails if anyone listens there.
            let addr = if args.share_port {
                server.addr
            } else {
                free_address(server.addr)?
            };
            let listeners = (0..workers)
                .map(|_| reuseport_listener(addr, args))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let local = listeners[0].local_addr()?;
            common::output::write_stdout(format!("listening on {local}\n").as_bytes());
            Ok(listeners)
        }
    }
}

/// The options every listening socket gets before listen(2), so that no
/// client is queued before they hold.
fn options(socket: &Socket, args: &Args) -> io::Result<()> {
    // O_NONBLOCK: accept(2) says EAGAIN instead of waiting, for the
    // workers that were woken and find the queue empty.
    socket.set_nonblocking(true)?;
    defer_accept(socket, args.defer_accept)
}

/// One listening socket of a SO_REUSEPORT group on `addr`.
fn reuseport_listener(addr: SocketAddr, args: &Args) -> anyhow::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    // SO_REUSEPORT, on every socket of the group, before bind(2) (socket(7)):
    // the sockets then share the port, each with its own accept queue.
    socket.set_reuse_port(true)?;
    socket
        .bind(&addr.into())
        .map_err(|err| common::explain_bind_error(err, &addr.to_string()))?;
    options(&socket, args).context("cannot set the listening socket's options")?;
    // Each socket has its own queue of `--backlog` connections.
    socket
        .listen(args.epoll.server.backlog)
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(socket.into())
}
// ANCHOR_END: listeners

/// Checks that nobody listens on `addr` with a bind(2) that has no
/// SO_REUSEPORT, then lets the port go again; returns the address bound
/// (with the real port, when `addr` asked for port 0).
fn free_address(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As every listener here: connections of an earlier run lingering in
    // TIME_WAIT do not make the port busy.
    probe.set_reuse_address(true)?;
    probe
        .bind(&addr.into())
        .map_err(|err| common::explain_bind_error(err, &addr.to_string()))?;
    let bound = probe.local_addr()?.as_socket();
    bound.context("the probe socket has no IP address")
    // `probe` is closed here, never having listened: the port is free.
}

/// TCP_DEFER_ACCEPT (tcp(7): "allow a listener to be awakened only when
/// data arrives on the socket"). A client connects, then sends its
/// request: without the option, a server faster than its client accepts
/// in between, finds nothing to read, and must watch the socket and sleep
/// until the request comes. With it, the kernel keeps the connection until
/// the request is there, or `seconds` have passed (0 turns it off).
fn defer_accept(socket: &Socket, seconds: u16) -> io::Result<()> {
    let value = nix::libc::c_int::from(seconds);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `value`,
    // which lives across the call; the fd is the socket's, open. (Neither
    // socket2 nor nix has a wrapper for TCP_DEFER_ACCEPT.)
    let rc = unsafe {
        nix::libc::setsockopt(
            socket.as_raw_fd(),
            nix::libc::IPPROTO_TCP,
            nix::libc::TCP_DEFER_ACCEPT,
            (&raw const value).cast(),
            size_of::<nix::libc::c_int>() as nix::libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What a worker counts, printed when it stops.
#[derive(Default)]
struct Counts {
    /// Connections accepted.
    accepted: u64,
    /// Times the kernel woke the worker from its sleep in epoll_wait.
    wakeups: u64,
    /// Of those, the times it found nothing to accept (or serve): another
    /// worker had taken the connection first.
    empty: u64,
}

// ANCHOR: sleeps
/// How many times this thread has slept so far: its voluntary context
/// switches, from getrusage(2) with RUSAGE_THREAD. A worker sleeps only in
/// epoll_wait (with --quiet; printing can wait too), so each one is a
/// wakeup by the kernel, whether epoll_wait then returned or found nothing
/// after all and slept again.
fn sleeps() -> io::Result<u64> {
    let usage = getrusage(UsageWho::RUSAGE_THREAD)?;
    Ok(usage.voluntary_context_switches() as u64)
}
// ANCHOR_END: sleeps

/// One worker thread: its epoll instance, the listening socket it accepts
/// from, and the connections that did not finish in one go.
struct Worker<'a> {
    index: usize,
    epoll: Epoll,
    listener: &'a TcpListener,
    acceptor: Acceptor,
    connections: HashMap<u64, Connection>,
    counts: Counts,
}

// ANCHOR: run
impl Worker<'_> {
    /// The worker's loop, until the stop signal: then its counts.
    fn run(mut self, args: &Args) -> io::Result<Counts> {
        let mut events = [EpollEvent::empty(); 64];
        let mut slept_before = sleeps()?;
        loop {
            let ready = match self.epoll.wait(&mut events, self.acceptor.timeout()) {
                Ok(ready) => ready,
                Err(Errno::EINTR) => continue,
                Err(err) => return Err(err.into()),
            };
            // How often the kernel woke this worker during that wait. Every
            // wakeup but the last found nothing (the thread went back to
            // sleep inside epoll_wait); the last one brought `events`.
            let slept = sleeps()?;
            let woken = slept - slept_before;
            slept_before = slept;
            self.counts.wakeups += woken;
            self.counts.empty += woken.saturating_sub(1);

            self.acceptor.resume(&self.epoll, self.listener)?;
            let events = &events[..ready];
            // A stop anywhere in this batch comes first: a stopping worker
            // takes no one else. Returning drops its connections (closing
            // them) and its epoll instance.
            if events.iter().any(|event| event.data() == STOP) {
                return Ok(self.counts);
            }
            let mut found_work = false;
            for event in events {
                if args.epoll.trace {
                    let names = common::epoll_flag_names(event.events().bits() as u32);
                    let line = format!("worker {}: fd {}: {names}\n", self.index, event.data());
                    common::output::write_stderr(line.as_bytes());
                }
                found_work |= match event.data() {
                    LISTENER => self.accept_all(args)? > 0,
                    token => self.on_connection(token, args.epoll.server.quiet),
                };
            }
            if woken > 0 && !found_work {
                // The last wakeup, too, was for nothing: the listening
                // socket was reported, but another worker had emptied its
                // queue by the time this one called accept(2).
                self.counts.empty += 1;
            }
        }
    }
    // ANCHOR_END: run

    // ANCHOR: accept
    /// The listening socket is readable: accept until the queue is empty.
    /// Returns how many connections that was.
    fn accept_all(&mut self, args: &Args) -> io::Result<u64> {
        let mut accepted = 0;
        while let Some(stream) = self
            .acceptor
            .accept_nonblocking(&self.epoll, self.listener)?
        {
            accepted += 1;
            if !args.accept_only {
                self.serve(stream, args.epoll.server.quiet)?;
            }
            // (With --accept-only the stream is dropped here: close(2).)
        }
        self.counts.accepted += accepted;
        Ok(accepted)
    }

    /// A new connection: serve it at once, and watch it with epoll only if
    /// its client is too slow for that.
    fn serve(&mut self, stream: TcpStream, quiet: bool) -> io::Result<()> {
        let mut connection = Connection {
            stream,
            request: RequestBuffer::new(),
            response: PendingResponse::whole(),
            waiting_for: Next::Read,
        };
        // The request is usually here already: TCP_DEFER_ACCEPT had the
        // kernel wait for it before it queued the connection. (Without the
        // option, a server faster than its client often finds nothing.)
        match connection.advance(quiet) {
            // Answered: dropping the connection closes it.
            Ok(Next::Done) | Err(_) => Ok(()),
            Ok(next) => self.watch(connection, next),
        }
    }
    // ANCHOR_END: accept

    // ANCHOR: watch
    /// The slow path: epoll_ctl(EPOLL_CTL_ADD) for the connection, edge-
    /// triggered, for the event that `next` waits for.
    fn watch(&mut self, mut connection: Connection, next: Next) -> io::Result<()> {
        let token = connection.stream.as_raw_fd() as u64;
        connection.waiting_for = next;
        let interest = EpollEvent::new(next.flags(), token);
        match self.epoll.add(&connection.stream, interest) {
            Ok(()) => {
                self.connections.insert(token, connection);
            }
            // Dropping the connection closes it; the server carries on.
            Err(err) => common::warn(format_args!("cannot watch a connection: {err}")),
        }
        Ok(())
    }

    /// An event for a connection on the slow path: carry on where it
    /// stopped. Returns whether there was such a connection.
    fn on_connection(&mut self, token: u64, quiet: bool) -> bool {
        let Some(connection) = self.connections.get_mut(&token) else {
            return false;
        };
        match connection.advance(quiet) {
            // Still waiting for the same thing: the entry stays as it is.
            Ok(next) if next == connection.waiting_for => {}
            // The request is complete but the send buffer is full: switch
            // the entry to EPOLLOUT (epoll_ctl(EPOLL_CTL_MOD)).
            Ok(Next::Write) => {
                let mut interest = EpollEvent::new(Next::Write.flags(), token);
                if self.epoll.modify(&connection.stream, &mut interest).is_ok() {
                    connection.waiting_for = Next::Write;
                } else {
                    // ENOMEM: nothing would say when to write. This client
                    // goes, as one that `watch` cannot add does; the
                    // server carries on.
                    self.connections.remove(&token);
                }
            }
            // Answered, or the client has gone. close(2) also takes the
            // socket out of the interest list (epoll(7): no other fd refers
            // to it), so no EPOLL_CTL_DEL.
            Ok(_) | Err(_) => {
                self.connections.remove(&token);
            }
        }
        true
    }
    // ANCHOR_END: watch
}

/// A connection on the slow path, between events.
struct Connection {
    stream: TcpStream,
    request: RequestBuffer,
    response: PendingResponse,
    /// What its epoll entry waits for.
    waiting_for: Next,
}

/// What a connection needs next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    /// More of the request (EPOLLIN).
    Read,
    /// Room in the send buffer for the rest of the response (EPOLLOUT).
    Write,
    /// Nothing: answered, ready to close.
    Done,
}

impl Next {
    /// The epoll interest for waiting on it, edge-triggered.
    fn flags(self) -> EpollFlags {
        match self {
            Next::Read => EpollFlags::EPOLLIN | EpollFlags::EPOLLET,
            Next::Write | Next::Done => EpollFlags::EPOLLOUT | EpollFlags::EPOLLET,
        }
    }
}

// ANCHOR: advance
impl Connection {
    /// Reads the request until it is complete, then writes the response,
    /// each until done or EAGAIN. An error means "close this client".
    fn advance(&mut self, quiet: bool) -> io::Result<Next> {
        let mut buffer = [0u8; 1024];
        while self.request.progress() == Progress::Incomplete {
            let n = match self.stream.read(&mut buffer) {
                // The client closed before its request was complete.
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                // EAGAIN: nothing more for now. Edge-triggered, the next
                // bytes to arrive make the next event.
                Err(err) if is_transient(&err) => return Ok(Next::Read),
                Err(err) => return Err(err),
            };
            match self.request.push(&buffer[..n]) {
                Progress::Incomplete => {}
                Progress::Complete if !quiet => common::print_request(&self.request),
                Progress::Complete => {}
                Progress::TooLarge => self.response = PendingResponse::too_large(),
            }
        }
        // The request is complete: write at once, no EPOLLOUT first. A
        // fresh socket's send buffer has room for the whole response, so
        // this is one write(2); EAGAIN only for a client that has stopped
        // reading a larger answer.
        while !self.response.is_done() {
            match self.stream.write(self.response.unsent()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.response.advance(n),
                Err(err) if is_transient(&err) => return Ok(Next::Write),
                Err(err) => return Err(err),
            }
        }
        // Answered. The caller drops the connection: close(2) queues a FIN
        // behind the response, and the kernel delivers both.
        Ok(Next::Done)
    }
}
// ANCHOR_END: advance
