//! Starting a server whose standard input is a pipe the test writes to.
//!
//! [`Server::start`] gives servers /dev/null as stdin. A program that
//! watches its stdin (example 9) needs a real pipe: the test writes to one
//! end, and closes it to show the server what end of file looks like.

use std::fs::File;
use std::process::Stdio;

use nix::fcntl::OFlag;

use crate::Server;

/// Starts `name` like [`Server::start`], with a pipe as its stdin; returns
/// the server and the pipe's write end. Dropping the write end gives the
/// server end of file.
pub fn start_with_piped_stdin(name: &str, args: &[&str]) -> (Server, File) {
    // pipe2(2), with O_CLOEXEC: both ends stay out of every child, the
    // server included: it gets the read end only as its fd 0, duplicated
    // there by Command. Were the write end inherited, the server would hold
    // its own pipe open and never see EOF.
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe2");
    let server = Server::start_with(name, args, |command| {
        command.stdin(Stdio::from(read_end));
    });
    // The command, and with it our copy of the read end, is gone now: the
    // server holds the only one.
    (server, File::from(write_end))
}
