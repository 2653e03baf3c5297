//! Example 15: the same server on tokio.
//!
//! Example 14 drove mio by hand: a loop around `poll`, a map from token to
//! connection, and for each connection a struct that remembers where it
//! stands (reading the request, writing the response) and which interest
//! it is registered with. tokio keeps all of that for us:
//!
//! - the loop around `poll` is tokio's runtime: its I/O driver owns a
//!   `mio::Poll`, and calls it (epoll_wait) when no task can run;
//! - the map from token to connection is the driver's: each registered
//!   socket's token points at the readiness state tokio keeps for it;
//! - the connection struct is an `async fn`: the compiler turns `serve`
//!   below into a state machine whose fields are its local variables and
//!   whose states are its `.await`s. A spawned task owns one;
//! - `.await` on a socket that is not ready returns to the runtime, which
//!   runs other tasks and, when none is left to run, goes back to
//!   epoll_wait.
//!
//! Run it with `cargo run -p example15_tokio`, then `curl
//! http://127.0.0.1:8080/`. `-- --runtime multi-thread` runs the tasks on
//! one worker thread per CPU instead of on the main thread alone.

use std::io;
use std::os::fd::AsRawFd;

use clap::{Parser, ValueEnum};
use common::{ACCEPT_PAUSE, EpollArgs, Progress, RequestBuffer};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};

/// Example 15: the tutorial's server on tokio, one task per connection.
/// Stop it with Ctrl-C (SIGINT) or SIGTERM: it drops every task, closing
/// its sockets, and exits with status 0.
#[derive(Parser)]
#[command(version, mut_arg("trace", |arg| arg.help(
    "Print what each connection's task does when an .await completes \
     (`fd 9: accepted`, `fd 9: read 79 bytes`, `fd 9: wrote 114 bytes`, \
     `fd 9: closed`), to stderr. tokio keeps its epoll events to itself: \
     `strace -f -e epoll_wait,epoll_ctl` shows them"
)))]
struct Args {
    #[command(flatten)]
    epoll: EpollArgs,

    /// Which runtime runs the tasks: `current-thread` runs them, and the
    /// epoll_wait loop, on the main thread alone; `multi-thread` on a pool
    /// of worker threads, one per CPU, which take turns in epoll_wait and
    /// steal tasks from each other.
    #[arg(long, value_enum, default_value_t = Runtime::CurrentThread)]
    runtime: Runtime,
}

#[derive(Clone, Copy, ValueEnum)]
enum Runtime {
    CurrentThread,
    MultiThread,
}

/// What each task needs to know of the command line.
#[derive(Clone, Copy)]
struct Options {
    quiet: bool,
    trace: bool,
}

// ANCHOR: main
fn main() -> common::MainResult {
    let args = Args::parse();
    // Block SIGINT and SIGTERM first: the runtime's worker threads, started
    // below, inherit the blocked set, so no thread of ours can be killed
    // by them. They wait in this signalfd instead.
    let stop = common::stop_signals()?;
    let listener = common::listen(&args.epoll.server)?;
    listener.set_nonblocking(true)?;
    let options = Options {
        quiet: args.epoll.server.quiet,
        trace: args.epoll.trace,
    };

    let mut builder = match args.runtime {
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread(),
    };
    // enable_io: the I/O driver, a mio Poll (epoll_create1, and an eventfd
    // for its own mio Waker). enable_time: timers, for the accept pause;
    // they need no fd, only epoll_wait's timeout.
    let runtime = builder.enable_io().enable_time().build()?;
    runtime.block_on(async {
        // Both register with the driver (epoll_ctl(EPOLL_CTL_ADD)), which
        // is why they are made inside the runtime.
        let listener = TcpListener::from_std(listener)?;
        // SAFETY: tokio registers the signalfd's fd number with epoll and
        // relies on it naming the same open file until the AsyncFd is
        // dropped. The SignalFd owns its fd, and the AsyncFd owns the
        // SignalFd: the fd is closed only after it is deregistered.
        let stop = unsafe { AsyncFd::register_with_interest(stop, Interest::READABLE) }?;
        tokio::spawn(accept_loop(listener, options));
        // Sleep until a stop signal is pending. The signal is not read: it
        // stays pending, so that common::output gives up any write stuck
        // on a full stdout, and every task can finish its current poll.
        let _ready = stop.readable().await?;
        io::Result::Ok(())
    })?;
    // Dropping the runtime (here, at the end of `main`) drops every task
    // it holds, which drops their sockets: each is deregistered and closed.
    Ok(())
}
// ANCHOR_END: main

// ANCHOR: accept_loop
/// Accepts clients for ever, and spawns a task for each.
///
/// The loop many tokio examples show, `loop { let (socket, _) =
/// listener.accept().await?; ... }`, ends the server at the first failed
/// accept: the `?` returns EMFILE from it when descriptors run out. Logging
/// and carrying on instead is a busy loop: tokio clears its record that the
/// listener is readable only when accept(2) says EAGAIN, so the next
/// `accept().await` calls accept(2) again at once, and fails again. A
/// lasting failure needs a pause.
async fn accept_loop(listener: TcpListener, options: Options) {
    loop {
        match listener.accept().await {
            Ok((stream, _address)) => {
                if options.trace {
                    trace(&stream, format_args!("accepted"));
                }
                // A task of its own: from here on the runtime polls it
                // whenever its socket is ready, among all the others.
                tokio::spawn(serve(stream, options));
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // This client is gone (ECONNABORTED, ...): take the next.
            Err(err) if common::concerns_one_client(&err) => {
                common::warn(format_args!("accept failed: {err}"));
            }
            // Out of descriptors, or of memory: the client stays queued.
            // Sleep (a timer, not a thread), then try again. The listener
            // is still marked readable, so the next accept(2) is made at
            // once: no client is stranded.
            Err(err) => {
                common::warn(format_args!("accept failed, pausing: {err}"));
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}
// ANCHOR_END: accept_loop

// ANCHOR: serve
/// One connection, from its first byte to its close. Errors (a reset, a
/// client gone before its answer) end the task, and with it the
/// connection.
async fn serve(mut stream: TcpStream, options: Options) {
    let outcome = answer(&mut stream, options).await;
    if options.trace {
        let how = match outcome {
            Ok(()) => String::new(),
            Err(err) => format!(" ({err})"),
        };
        trace(&stream, format_args!("closed{how}"));
    }
    // `stream` is dropped here: epoll_ctl(EPOLL_CTL_DEL), then close(2).
}

/// Reads one request and sends the answer: the whole life of example 4's
/// `Connection`, written as straight-line code.
async fn answer(stream: &mut TcpStream, options: Options) -> io::Result<()> {
    let mut request = RequestBuffer::new();
    let mut buffer = [0u8; 1024];
    let response = loop {
        // read(2), if tokio believes the socket readable (a new one is, at
        // first). If not, or if read(2) says EAGAIN, `.await` returns to
        // the runtime, and this task is polled again when epoll reports
        // the socket readable.
        let n = stream.read(&mut buffer).await?;
        if options.trace {
            trace(stream, format_args!("read {n} bytes"));
        }
        if n == 0 {
            // The client closed its side before its request was complete.
            return Ok(());
        }
        match request.push(&buffer[..n]) {
            Progress::Incomplete => continue,
            Progress::Complete => {
                if !options.quiet {
                    // A blocking write to stdout, as in every example: it
                    // holds up this thread's other tasks while it lasts.
                    common::print_request(&request);
                }
                break common::RESPONSE;
            }
            Progress::TooLarge => break common::response::TOO_LARGE,
        }
    };
    // write(2) until every byte is sent; `.await` returns to the runtime
    // while the send buffer is full.
    stream.write_all(response).await?;
    if options.trace {
        trace(stream, format_args!("wrote {} bytes", response.len()));
    }
    // shutdown(SHUT_WR): the kernel sends FIN after the response.
    stream.shutdown().await
}
// ANCHOR_END: serve

/// Prints one step of a connection's task for `--trace`: `fd 9: read 79
/// bytes`.
fn trace(stream: &TcpStream, what: std::fmt::Arguments<'_>) {
    let line = format!("fd {}: {what}\n", stream.as_raw_fd());
    common::output::write_stderr(line.as_bytes());
}
