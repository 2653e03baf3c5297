//! Starting a server whose standard input is a pipe the test writes to.
//!
//! [`Server::start`] gives servers /dev/null as stdin. A program that
//! watches its stdin (example 9) needs a real pipe: the test writes to one
//! end, and closes it to show the server what end of file looks like.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;

use crate::Server;

/// Starts `name` like [`Server::start`], with a pipe as its stdin; returns
/// the server and the pipe's write end. Dropping the write end gives the
/// server end of file.
pub fn start_with_piped_stdin(name: &str, args: &[&str]) -> (Server, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array we pass. O_CLOEXEC keeps
    // both ends out of every child, the server included: it gets the read
    // end only as its fd 0, duplicated there by Command. Were the write end
    // inherited, the server would hold its own pipe open and never see EOF.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let server = Server::start_with(name, args, |command| {
        command.stdin(Stdio::from(read_end));
    });
    // The command, and with it our copy of the read end, is gone now: the
    // server holds the only one.
    (server, write_end)
}
