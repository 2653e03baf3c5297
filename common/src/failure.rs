//! How a server reports the error that stops it.

use std::fmt;

/// What `main` returns: `Ok(())`, or the error that stopped the server.
pub type MainResult = Result<(), Failure>;

/// An error as `main` shows it: one line, the message and its causes
/// (`cannot listen on 127.0.0.1:8080: the port is in use ...: Address already
/// in use (os error 98)`), with no backtrace, whatever `RUST_BACKTRACE` says.
///
/// When `main` returns `Err`, Rust prints `Error: ` and the error's `Debug`
/// form, then exits with status 1; this type makes that form readable.
pub struct Failure(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure(err.into())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn shows_the_chain_on_one_line() {
        let err: Result<(), std::io::Error> = Err(std::io::ErrorKind::AddrInUse.into());
        let failure = Failure::from(err.context("cannot listen").unwrap_err());
        assert_eq!(format!("{failure:?}"), "cannot listen: address in use");
    }
}
