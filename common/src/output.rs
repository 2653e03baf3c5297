//! What the servers print, written so that printing can neither kill a
//! server nor make it deaf to Ctrl-C.
//!
//! Two things can go wrong with output. The reader can go away (`| head`
//! exits): the next write(2) fails with EPIPE. `println!` panics on that;
//! these functions ignore it, since a server must not die because its log
//! went away. Or the reader can stop reading (`| less` left on its first
//! page, a terminal paused with Ctrl-S): once the pipe or the terminal's
//! queue is full, write(2) blocks. A server blocked there serves no one,
//! and, worse, never gets back to epoll_wait to find SIGINT or SIGTERM in
//! its signalfd (the signals are blocked, see `signals`): Ctrl-C and `kill`
//! do nothing.
//!
//! So every write first waits with poll(2) for room in the output *or* a
//! pending stop signal, watched by a signalfd of this module's own. With
//! room, it writes; with a stop signal pending, it drops the output and
//! returns, and the loop finds the signal and stops. While the output is
//! merely slow, the server waits for it, like the Python's `print`: making
//! stdout non-blocking would change the terminal the shell shares (the
//! O_NONBLOCK flag belongs to the open file, not to this process), and
//! keeping what does not fit would need a buffer, a cap and a policy.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::request::RequestBuffer;

/// The separator the HOWTO prints above each request.
const SEPARATOR: &str = "----------------------------------------";

/// At most this much per write(2). poll(2) reports a pipe writable when a
/// page (4 KiB) is free, and a terminal when its queue is nearly empty: a
/// write this small then goes through without blocking.
const CHUNK: usize = 1024;

/// A signalfd for the stop signals, only ever polled, never read: reading
/// is the loop's job, with its own signalfd. Set by `signals`.
static STOP_SIGNALS: OnceLock<SignalFd> = OnceLock::new();

/// Set once a stop signal has been taken: output no longer waits at all.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Prints a request like the tutorial: a line of dashes, then the request.
pub fn print_request(request: &RequestBuffer) {
    let entry = format!("{SEPARATOR}\n{}\n", request.text());
    write_stdout(entry.as_bytes());
}

/// Prints one epoll event to stderr for `--trace`: `fd 5: EPOLLIN|EPOLLRDHUP`.
pub fn trace_event(fd: u64, events: u32) {
    let line = format!("fd {fd}: {}\n", crate::flags::epoll_flag_names(events));
    write_stderr(line.as_bytes());
}

/// Prints a note to stderr (a dropped connection, a failed accept), with the
/// program's name first, as command-line tools do.
pub fn warn(message: std::fmt::Arguments<'_>) {
    let name = std::env::args().next().unwrap_or_default();
    let name = name.rsplit('/').next().unwrap_or_default();
    let line = format!("{name}: {message}\n");
    write_stderr(line.as_bytes());
}

/// Writes `bytes` to stdout as they are (not necessarily UTF-8), unless a
/// stop signal comes first.
pub fn write_stdout(bytes: &[u8]) {
    // The lock keeps one entry whole when threads print at once (example
    // 7), and keeps std's own buffered stdout out of the way.
    let stdout = io::stdout().lock();
    write_all(stdout.as_fd(), bytes);
}

/// Writes `bytes` to stderr, unless a stop signal comes first.
pub fn write_stderr(bytes: &[u8]) {
    let stderr = io::stderr().lock();
    write_all(stderr.as_fd(), bytes);
}

/// For a loop that reads its stop signal and then still prints (a goodbye
/// line): from now on, output that cannot be written at once is dropped.
/// (Reading the signal takes it, so the signalfd here no longer shows it.)
pub fn stopping() {
    STOPPING.store(true, Ordering::Relaxed);
}

/// Called by `signals::stop_signals` once SIGINT and SIGTERM are blocked:
/// from then on, output waits for room or for one of `stop`. (The blocking
/// servers need none of this: their stop thread takes the signal even
/// while the main thread is stuck in write(2).)
pub(crate) fn watch_stop_signals(stop: &SigSet) -> io::Result<()> {
    if STOP_SIGNALS.get().is_none() {
        let flags = SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK;
        let _ = STOP_SIGNALS.set(SignalFd::with_flags(stop, flags)?);
    }
    Ok(())
}

// ANCHOR: room
/// write(2) until every byte is out, unless a stop signal comes first.
/// Errors end the output silently: EPIPE (Rust ignores SIGPIPE, so a closed
/// stdout is an error, not a death) is no reason to stop serving.
fn write_all(out: BorrowedFd<'_>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        if !wait_for_room(out) {
            return;
        }
        match nix::unistd::write(out, &bytes[..bytes.len().min(CHUNK)]) {
            Ok(0) => return,
            Ok(n) => bytes = &bytes[n..],
            // Someone else made the output non-blocking: wait again.
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => return,
        }
    }
}

/// Waits until `out` can take a write (true) or a stop signal is pending
/// (false).
fn wait_for_room(out: BorrowedFd<'_>) -> bool {
    let stopping = STOPPING.load(Ordering::Relaxed);
    let stop = STOP_SIGNALS.get().filter(|_| !stopping);
    // An array rather than a Vec, so that no write allocates. Its second
    // entry, the stop signals, is handed to poll only when they count (with
    // none, it is a placeholder poll never sees).
    let (second, watched) = match stop {
        Some(stop) => (PollFd::new(stop.as_fd(), PollFlags::POLLIN), 2),
        None => (PollFd::new(out, PollFlags::POLLOUT), 1),
    };
    let mut all = [PollFd::new(out, PollFlags::POLLOUT), second];
    let fds = &mut all[..watched];
    let timeout = if stopping {
        PollTimeout::ZERO
    } else {
        PollTimeout::NONE
    };
    loop {
        match poll(fds, timeout) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            // Cannot wait (out of memory): write, as a plain write would.
            Err(_) => return true,
        }
    }
    // POLLERR or POLLHUP (the reader has gone) count as room: the write
    // then reports the error, and the output ends.
    let room = PollFlags::POLLOUT | PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
    fds[0].revents().is_some_and(|got| got.intersects(room))
}
// ANCHOR_END: room

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;

    use nix::sys::signal::{Signal, raise};

    use super::*;

    /// Writes into `pipe` while poll(2) says it has room: afterwards a
    /// blocking write would sleep.
    fn fill(pipe: &OwnedFd) {
        for _ in 0..1_000 {
            let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLOUT)];
            if poll(&mut fds, PollTimeout::ZERO).unwrap() == 0 {
                return;
            }
            // A free slot takes a whole page without blocking.
            nix::unistd::write(pipe, &[b'x'; 4096]).unwrap();
        }
        panic!("the pipe never filled up");
    }

    #[test]
    fn a_full_output_is_given_up_when_a_stop_signal_is_pending() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // A thread of its own: if the stop path failed, it would sleep in
        // write(2) for ever, and the test should fail, not hang.
        std::thread::spawn(move || {
            // As a server does: block the stop signals first.
            let stop = crate::stop_signals().unwrap();
            let (_read_end, write_end) = nix::unistd::pipe().unwrap();
            fill(&write_end);
            // raise(3) makes SIGTERM pending for this thread only, which
            // has it blocked: it waits in the signalfds instead of ending
            // the tests.
            raise(Signal::SIGTERM).unwrap();
            write_all(write_end.as_fd(), &[b'y'; 10_000]);
            // Take the signal, so that nothing else sees it.
            assert!(stop.read_signal().unwrap().is_some());
            done_tx.send(()).unwrap();
        });
        let waited = std::time::Duration::from_secs(20);
        assert!(
            done_rx.recv_timeout(waited).is_ok(),
            "a write to a full pipe ignored the pending SIGTERM for {waited:?}"
        );
    }

    #[test]
    fn every_byte_arrives_in_order_through_the_chunks() {
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        // More than a pipe holds: the writer waits for the reader, chunk by
        // chunk.
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let expected = bytes.clone();
        let writer = std::thread::spawn(move || write_all(write_end.as_fd(), &bytes));
        let mut got = Vec::new();
        let mut file = std::fs::File::from(read_end);
        std::io::Read::read_to_end(&mut file, &mut got).unwrap();
        writer.join().unwrap();
        assert_eq!(got, expected);
    }
}
