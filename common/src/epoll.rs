//! Two small answers every epoll loop here needs: which token names a
//! socket, and which errors mean "not now" rather than "this client is
//! gone".

use std::io;
use std::os::fd::AsRawFd;

/// The epoll token of a socket: its file descriptor number, as the Python
/// uses. epoll_wait(2) hands the token back with each event, and the loop
/// looks the connection up by it.
///
/// An fd number is reused as soon as its fd is closed, so a library that
/// cannot rule out a stale event hands out tokens that never repeat (see
/// the event loop chapter, and example 10's `Token`).
pub fn token_of(socket: &impl AsRawFd) -> u64 {
    socket.as_raw_fd() as u64
}

/// True for the errors of a non-blocking read or write that mean "try
/// later": EAGAIN (Rust's `WouldBlock`: nothing to read, or no room to
/// write, until epoll says so) and EINTR (`Interrupted`: a signal arrived
/// during the call, nothing was lost). Every other error ends the
/// connection.
pub fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EAGAIN and EINTR are "try later"; a reset or a broken pipe is not.
    #[test]
    fn only_eagain_and_eintr_are_transient() {
        let errno = io::Error::from_raw_os_error;
        assert!(is_transient(&errno(nix::libc::EAGAIN)));
        assert!(is_transient(&errno(nix::libc::EINTR)));
        assert!(!is_transient(&errno(nix::libc::ECONNRESET)));
        assert!(!is_transient(&errno(nix::libc::EPIPE)));
    }
}
