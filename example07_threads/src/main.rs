//! Example 7: blocking sockets, one thread per connection.
//!
//! The alternative the HOWTO weighs epoll against ("one thread (or even a
//! dedicated process) ... on each of those sockets"), and the model of
//! traditional servers in the overview of evented servers. The request
//! handling is example 2's, word for word: blocking reads until the end of
//! the request, one blocking write. The difference is where it runs: the
//! main thread only accepts, and every connection gets a thread of its own.
//!
//! So a client that connects and says nothing blocks only its own thread:
//! its neighbours are answered, as with epoll. The price is a thread per
//! connection: a kernel task, a stack, a scheduler entry. 500 idle clients
//! are 500 sleeping threads (the tests count them in /proc), where the epoll
//! servers hold 500 map entries in one thread. Hence `--max-threads`.
//!
//! Run it with `cargo run -p example07_threads`, then `curl
//! http://127.0.0.1:8080/`. Watch the threads come and go with
//! `grep Threads /proc/$(pidof example07_threads)/status`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use clap::Parser;
use common::{PendingResponse, Progress, RequestBuffer, ServerArgs};

/// Example 7: answer HTTP requests with one thread per connection. Stop it
/// with Ctrl-C (SIGINT) or SIGTERM: it exits with status 0.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    /// The most connections served at once, each by its own thread. A
    /// client arriving when all are busy is answered `503 Service
    /// Unavailable` and closed. Each thread reserves a 64 KiB stack, so the
    /// default of 1000 reserves about 64 MiB of address space (far less is
    /// actually touched), and stays below common limits on threads per user.
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_threads: u32,
}

/// The stack each connection thread gets.
///
/// Rust's default is 2 MiB per thread. That is address space, not memory
/// (the kernel maps a page only when the thread first touches it), but
/// 10,000 connections would still reserve 20 GiB of it, and each thread
/// touches a few pages whatever its size. `handle` needs little: a 1 KiB
/// read buffer and a few frames of calls, and printing; the request itself
/// is on the heap. 64 KiB leaves room to spare. A thread that overflows its
/// stack hits the guard page below it and the process aborts with "thread
/// has overflowed its stack": a loud failure, never silent corruption.
///
/// Stacks are not the only cost. The kernel keeps a task for each thread,
/// and glibc's malloc gives threads that allocate an arena of their own (up
/// to 8 per core, 64 MiB of address space each). With 500 idle clients the
/// tests measured about 10 KiB more resident memory per thread, and VmSize
/// up by some 870 MiB, nearly all of it reserved and never touched.
const STACK_SIZE: usize = 64 * 1024;

/// The answer to a client that comes when every thread is busy (or when
/// the kernel refuses a new thread).
const UNAVAILABLE: &[u8] = b"HTTP/1.0 503 Service Unavailable\r\n\
Content-Type: text/plain\r\n\
Content-Length: 21\r\n\
\r\n\
Too many connections\n";

// ANCHOR: main
fn main() -> common::MainResult {
    let args = Args::parse();
    // Ctrl-C (SIGINT) or SIGTERM ends the server with status 0. Called
    // first, so that every thread spawned later inherits the blocked signals
    // and only the waiting thread takes them.
    common::exit_on_stop_signals()?;
    let listener = common::listen(&args.server)?;
    let max = args.max_threads as usize;
    // How many connection threads are running: the main thread adds one
    // before it starts a thread, the thread takes it off as it ends.
    let busy = Arc::new(AtomicUsize::new(0));

    loop {
        // accept(2) blocks until a client is queued. It is the only thing
        // the main thread waits for: everything else happens elsewhere.
        let connection = match listener.accept() {
            Ok((connection, _address)) => connection,
            // A client that gave up while it waited in the queue: its
            // failure says nothing about the next one.
            Err(err) if common::concerns_one_client(&err) => {
                common::warn(format_args!("accept failed: {err}"));
                continue;
            }
            Err(err) => {
                // Out of file descriptors, most likely: no reason to stop
                // serving, but retrying at once would fail again. Wait a
                // moment so that a lasting error does not spin the CPU.
                common::warn(format_args!("accept failed, pausing: {err}"));
                thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        if busy.load(Ordering::Acquire) >= max {
            refuse(connection, format_args!("all {max} threads are busy"));
            continue;
        }
        if let Err((connection, err)) = spawn(connection, &busy, args.server.quiet) {
            refuse(connection, format_args!("cannot start a thread: {err}"));
        }
    }
    // This loop never ends: a stop signal ends the process.
}
// ANCHOR_END: main

// ANCHOR: spawn
/// Starts a thread that serves `connection`. If the kernel will not create
/// one (EAGAIN: a limit on threads or memory), gives the connection back.
fn spawn(
    connection: TcpStream,
    busy: &Arc<AtomicUsize>,
    quiet: bool,
) -> Result<(), (TcpStream, std::io::Error)> {
    // `spawn` consumes its closure, and drops it if no thread can be made:
    // a connection moved into the closure would be closed without a word.
    // So the thread gets its connection through a channel, once it exists,
    // and on failure the connection is still ours to answer.
    let (hand_over, receive) = mpsc::sync_channel::<TcpStream>(1);
    // Counted busy from now until this guard is dropped: when the thread
    // ends, or at once if it cannot start (the closure is dropped then).
    busy.fetch_add(1, Ordering::AcqRel);
    let done = BusyGuard(Arc::clone(busy));
    let started = thread::Builder::new()
        .name("connection".into())
        // clone(2) creates the thread; its stack is an mmap(2) of this size
        // plus a guard page. See STACK_SIZE.
        .stack_size(STACK_SIZE)
        .spawn(move || {
            // Taken off the count when the thread ends, even by a panic.
            let _done = done;
            if let Ok(connection) = receive.recv()
                && let Err(err) = handle(connection, quiet)
            {
                common::warn(format_args!("connection dropped: {err}"));
            }
        });
    match started {
        // The thread is detached: it ends by itself after its client. The
        // send never blocks (the channel has room for one) and cannot fail
        // (the thread is waiting in `recv`).
        Ok(_detached) => {
            let _ = hand_over.send(connection);
            Ok(())
        }
        Err(err) => Err((connection, err)),
    }
}
// ANCHOR_END: spawn

/// Subtracts one from the count of busy threads when dropped.
struct BusyGuard(Arc<AtomicUsize>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers 503 and closes, from the main thread. The connection is new, so
/// its send buffer is empty and this short write does not block.
///
/// The client's request is never read. If it has already arrived, close(2)
/// finds unread bytes and sends a reset (RST) instead of the usual FIN, and
/// the client may see "connection reset" rather than the 503. Reading the
/// request first would mean a blocking read in the main thread: exactly the
/// stall a thread per connection exists to avoid.
fn refuse(mut connection: TcpStream, why: std::fmt::Arguments<'_>) {
    common::warn(format_args!("refusing a connection: {why}"));
    let _ = connection.write_all(UNAVAILABLE);
}

// ANCHOR: handle
/// Reads one request from `connection`, prints it and answers it: example
/// 2's `handle`, unchanged, now running in a thread of its own.
fn handle(mut connection: TcpStream, quiet: bool) -> std::io::Result<()> {
    let mut request = RequestBuffer::new();
    let mut buffer = [0u8; 1024];
    while request.progress() == Progress::Incomplete {
        // read(2) blocks this thread, and only this thread, until bytes
        // arrive. A silent client costs one sleeping thread.
        let n = connection.read(&mut buffer)?;
        if n == 0 {
            // The client closed before finishing its request.
            return Ok(());
        }
        request.push(&buffer[..n]);
    }

    let response = match request.progress() {
        Progress::Complete => {
            if !quiet {
                // print_request writes one entry in one call, under the
                // stdout lock: threads printing at once never interleave.
                common::print_request(&request);
            }
            PendingResponse::whole()
        }
        _ => PendingResponse::too_large(),
    };
    connection.write_all(response.unsent())?;
    // Dropping the stream closes the socket; returning ends the thread.
    Ok(())
}
// ANCHOR_END: handle
