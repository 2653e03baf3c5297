//! Stopping a server cleanly on Ctrl-C (SIGINT) or `kill` (SIGTERM).
//!
//! The Python wraps its loop in `try ... finally` so that the listener and
//! the epoll instance are closed on the way out. In Rust, dropping them
//! closes them; what is needed is a way out of the loop. A signal handler
//! cannot safely do much, so the epoll servers turn signals into a file
//! descriptor instead: signalfd(2) becomes readable when SIGINT or SIGTERM is
//! pending, and it sits in the epoll set like any socket. The loop sees it,
//! returns from `main`, and every socket is dropped in order: exit status 0.
//!
//! (A self-pipe, written by a signal handler and read by the loop, is the
//! portable version of the same idea; signalfd needs no handler at all.)
//!
//! The blocking servers (examples 0, 1, 2 and 7) have no loop to watch a
//! second fd: they sit in accept(2) or read(2). For them a small thread waits
//! for the signal with sigwait(3) and ends the process with status 0; the kernel
//! closes every fd of an exiting process, the listener included.

use std::io;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Blocks SIGINT and SIGTERM for this thread and returns a signalfd that
/// becomes readable when one of them arrives.
///
/// Blocking comes first: a blocked signal stays pending instead of killing
/// the process, and a pending signal is exactly what signalfd reports. Call
/// this before spawning threads, which inherit the blocked set.
pub fn stop_signals() -> io::Result<SignalFd> {
    let stop = stop_set();
    stop.thread_block()?;
    // Output, too, must not wait past a stop signal (see `output`).
    crate::output::watch_stop_signals(&stop)?;
    let flags = SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK;
    Ok(SignalFd::with_flags(&stop, flags)?)
}

/// For the blocking servers: blocks SIGINT and SIGTERM and starts a thread
/// that waits for either and then exits the process with status 0.
///
/// Call it first in `main`, before any other thread exists, so that every
/// thread has the signals blocked and only the waiting thread takes them.
pub fn exit_on_stop_signals() -> io::Result<()> {
    let stop = stop_set();
    stop.thread_block()?;
    // (No signalfd for `output` here: the thread below takes the signal
    // even while the main thread is stuck writing to a full stdout, and
    // std::process::exit does not wait for the stdout lock.)
    std::thread::Builder::new()
        .name("stop".into())
        .spawn(move || {
            // sigwait(3): sleep until one of the blocked signals is pending,
            // and take it. std::process::exit flushes stdout first.
            if stop.wait().is_ok() {
                std::process::exit(0);
            }
        })?;
    Ok(())
}

fn stop_set() -> SigSet {
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    stop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_signal_is_read_from_the_fd_not_delivered() {
        let signals = stop_signals().unwrap();
        // Nothing pending yet: the non-blocking read says so.
        assert!(signals.read_signal().unwrap().is_none());
        // raise(3) sends to this thread, which has SIGTERM blocked: the
        // signal waits in the signalfd instead of ending the test process.
        nix::sys::signal::raise(Signal::SIGTERM).unwrap();
        let info = signals.read_signal().unwrap().expect("SIGTERM is pending");
        assert_eq!(info.ssi_signo, Signal::SIGTERM as u32);
    }
}
