//! Writing to stdout and stderr without going deaf to Ctrl-C.
//!
//! Output goes to file descriptors too, and a write(2) to one of them can
//! block: a pipe whose reader has stopped reading (`| less` left on its
//! first page), a terminal paused with Ctrl-S. Blocked in a write, the loop
//! does nothing else. Worse, SIGINT and SIGTERM are blocked (they wait in
//! the signalfd for the loop to read them), so Ctrl-C and `kill` no longer
//! stop the server: only SIGKILL does.
//!
//! The full epoll answer would make stdout non-blocking, watch it for
//! EPOLLOUT, and keep what it cannot take yet in a buffer of its own. But
//! O_NONBLOCK belongs to the open file, which a terminal's stdout shares
//! with the shell (see `watch_stdin` in main.rs), and the buffer would need
//! a cap and a policy for the clients that overflow it. This module does
//! less: before each write it waits, with poll(2), for either room in the
//! output or a pending stop signal. With room, it writes; with a stop
//! signal pending, it drops the output and returns, and the loop, back in
//! epoll_wait, finds the signal in its signalfd and stops. While the output
//! is merely slow, the server waits for it (so a client that floods stdout
//! is slowed down to the pace of its reader, with nothing buffered).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signalfd::SignalFd;

/// A signalfd of its own for SIGINT and SIGTERM, only ever polled, never
/// read: the loop's signalfd takes the signal, and then this one stops
/// being readable too.
static STOP_SIGNALS: OnceLock<SignalFd> = OnceLock::new();

/// Set once the loop has taken a stop signal: from then on, output that
/// cannot be written at once is dropped.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// At most this much per write(2). poll(2) reports a pipe writable when it
/// has a free page (4 KiB), and a terminal when its queue is nearly empty:
/// a write this small then goes through at once.
const CHUNK: usize = 1024;

/// From now on, output waits for room *or* a stop signal. Call it after
/// the stop signals are blocked (`common::stop_signals`).
pub fn watch_stop_signals() -> io::Result<()> {
    let signals = common::stop_signals()?;
    let _ = STOP_SIGNALS.set(signals);
    Ok(())
}

/// The loop has taken a stop signal: never wait for output again.
pub fn stopping() {
    STOPPING.store(true, Ordering::Relaxed);
}

/// Writes `bytes` to stdout, as they are (not necessarily UTF-8).
pub fn to_stdout(bytes: &[u8]) {
    write_all(io::stdout().as_fd(), bytes);
}

/// Writes `bytes` to stderr.
pub fn to_stderr(bytes: &[u8]) {
    write_all(io::stderr().as_fd(), bytes);
}

/// write(2) until every byte is out, unless a stop signal comes first.
/// Errors are ignored: a closed stdout (EPIPE; Rust ignores SIGPIPE) is no
/// reason to stop serving.
fn write_all(out: BorrowedFd<'_>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        if !wait_for_room(out) {
            return;
        }
        match nix::unistd::write(out, &bytes[..bytes.len().min(CHUNK)]) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => return,
        }
    }
}

/// Waits until `out` can take a write (true), or a stop signal is pending
/// (false). Once stopping, does not wait at all.
fn wait_for_room(out: BorrowedFd<'_>) -> bool {
    let stopping = STOPPING.load(Ordering::Relaxed);
    let mut fds = vec![PollFd::new(out, PollFlags::POLLOUT)];
    if let Some(signals) = STOP_SIGNALS.get().filter(|_| !stopping) {
        fds.push(PollFd::new(signals.as_fd(), PollFlags::POLLIN));
    }
    let timeout = if stopping {
        PollTimeout::ZERO
    } else {
        PollTimeout::NONE
    };
    loop {
        match poll(&mut fds, timeout) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            // Cannot wait: write, and perhaps block, as a plain write would.
            Err(_) => return true,
        }
    }
    // POLLERR, POLLHUP (the reader has gone): the write reports it.
    let ready = PollFlags::POLLOUT | PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
    fds[0].revents().is_some_and(|got| got.intersects(ready))
}
