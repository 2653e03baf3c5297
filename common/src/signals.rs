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
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    stop.thread_block()?;
    let flags = SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK;
    Ok(SignalFd::with_flags(&stop, flags)?)
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
