//! A server on raw pipes: its stdout (and stderr, if asked) are the test's
//! own, to read as bytes or to leave unread until they fill up.
//!
//! [`Server`](crate::Server) always drains both pipes and turns them into
//! text, so that no server ever blocks on its output. The tests of a full
//! stdout (a pager left on its first page) and of bytes that are not UTF-8
//! need the pipes themselves: [`start`] hands them over, read up to the
//! `listening on` line and no further.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A child process that is killed (SIGKILL) and reaped when dropped, pass
/// or fail, so that none outlives its test.
pub struct Killed(pub Child);

impl Killed {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends a signal (libc::SIGINT, SIGTERM, ...) to the process. Panics
    /// if it has already been reaped ([`wait_exit`](Self::wait_exit)
    /// returned its status): its pid may belong to another process by now.
    pub fn signal(&self, signal: i32) {
        let pid = Pid::from_raw(self.pid() as i32);
        let signal = Signal::try_from(signal).expect("a signal number");
        // Not reaped yet? waitid(2) with WNOWAIT looks without reaping:
        // ECHILD once it has been (we are its parent, and only `wait_exit`
        // and `drop`, which take `&mut self`, reap it). Running or a zombie,
        // its pid cannot be reused until we reap it.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        if let Err(err) = waitid(Id::Pid(pid), flags) {
            panic!("signal {signal} to {pid}: not a child left to signal (waitid: {err})");
        }
        // kill(2) with our own child's pid, checked above not yet reaped
        // (and `&self` keeps it so), so it cannot have been reused.
        kill(pid, signal).unwrap_or_else(|err| panic!("kill: {err}"));
    }

    /// Waits for the process to exit by itself, polling its status; None
    /// if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server started by [`start`], taken apart by the test:
/// `let Raw { process, addr, stdout, .. } = raw::start(...)`. (A field left
/// to `..` is dropped at the end of that statement: bind a pipe that must
/// stay open, `stdout: _unread`.)
pub struct Raw {
    pub process: Killed,
    /// The address from its `listening on` line.
    pub addr: SocketAddr,
    /// Its stdout, read up to the end of the `listening on` line and not a
    /// byte further.
    pub stdout: ChildStdout,
    /// Its stderr, if `start` was asked for a pipe.
    pub stderr: Option<ChildStderr>,
}

/// Starts binary `name` with `args` (plus `--addr 127.0.0.1:0` unless they
/// name an address), stdin /dev/null, stdout a pipe of the test's own, and
/// `stderr` as given (`Stdio::piped()` to get it in [`Raw::stderr`]); reads
/// the `listening on` line, byte by byte so that nothing after it is read.
pub fn start(name: &str, args: &[&str], stderr: Stdio) -> Raw {
    let mut command = Command::new(crate::binary(name));
    if !args.contains(&"--addr") {
        command.args(["--addr", "127.0.0.1:0"]);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {name}: {err}"));
    let mut stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take();
    let process = Killed(child);
    // The line is read in a thread, which hands the pipe back with it, so
    // that a server that hangs before printing fails the test after
    // STARTUP instead of hanging it. (The panic drops `process`: the kill
    // ends the read, and the thread.)
    let (line_tx, line_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\n") {
            match stdout.read(&mut byte) {
                Ok(1) => line.push(byte[0]),
                other => {
                    let _ = line_tx.send(Err(format!("{other:?} after {line:?}")));
                    return;
                }
            }
        }
        let _ = line_tx.send(Ok((line, stdout)));
    });
    let (line, stdout) = match line_rx.recv_timeout(crate::server::STARTUP) {
        Ok(Ok(read)) => read,
        Ok(Err(why)) => panic!("{name}: no startup line ({why})"),
        Err(_) => panic!(
            "{name} did not print `listening on ADDR` within {:?}",
            crate::server::STARTUP
        ),
    };
    let line = String::from_utf8_lossy(&line);
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("{name}: not a `listening on ADDR` line: {line:?}"));
    Raw {
        process,
        addr,
        stdout,
        stderr,
    }
}

/// Reads `pipe` to its end in a thread, throwing the bytes away, so that
/// the server never blocks writing to it.
pub fn drain(mut pipe: impl Read + Send + 'static) {
    thread::spawn(move || std::io::copy(&mut pipe, &mut std::io::sink()));
}

/// Whether the pipe is as full as a writer of lines gets it: a writer
/// blocks when a line no longer fits, which can leave part of each of its
/// pages unused; more than 7/8 of it is full for lines up to 1/8 of a page
/// (512 bytes).
pub fn nearly_full(pipe: &OwnedFd) -> bool {
    let (fill, capacity) = pipe_fill(pipe);
    fill >= capacity - capacity / 8
}

/// Reads `stream` to the server's close (the answer to what the test has
/// sent on it): Some(bytes); or None once nothing more comes while the
/// server's `stdout` pipe, which nobody reads, is nearly full ([`nearly_full`])
/// and so the server is stuck printing. Panics if neither happens within
/// [`PATIENCE`](crate::client::PATIENCE).
///
/// The pipe is looked at between reads of 50 ms, since a server may print
/// its last line after it has answered: a full pipe ends the wait at once,
/// not after a client's patience.
pub fn answer_unless_stuck(stream: &mut TcpStream, stdout: &OwnedFd) -> Option<Vec<u8>> {
    let deadline = Instant::now() + crate::client::PATIENCE;
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(answer),
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            // A read with a timeout (SO_RCVTIMEO) is not restarted after this
            // process is stopped and continued, or frozen and thawed: EINTR
            // (signal(7)). Nothing went wrong; read again.
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if nearly_full(stdout) {
                    return None;
                }
                assert!(
                    Instant::now() < deadline,
                    "no answer within {:?}, with stdout at {:?} (bytes, capacity); got {answer:?}",
                    crate::client::PATIENCE,
                    pipe_fill(stdout)
                );
            }
            Err(err) => panic!("reading the answer: {err}; got {answer:?}"),
        }
    }
}

/// Has clients ask the server until it is stuck printing into `stdout`, a
/// pipe that nobody reads: the pipe nearly full ([`nearly_full`]) and a
/// client unanswered. (Where the server then waits, write(2) or poll(2),
/// depends on how it prints: /proc's wchan cannot tell the poll(2) of a
/// full stdout from a poll(2) for clients.) `ask` connects a client and
/// sends its request; `answered` checks each answer. Returns how many
/// clients were answered. Panics if that takes over two minutes.
pub fn fill_stdout(
    process: &Killed,
    stdout: &OwnedFd,
    mut ask: impl FnMut() -> TcpStream,
    mut answered: impl FnMut(&[u8]),
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut clients = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "stdout never filled: {:?} (bytes, capacity) after {clients} clients; \
             the server sleeps in {:?}",
            pipe_fill(stdout),
            crate::process::wchans(process.pid())
        );
        let Some(answer) = answer_unless_stuck(&mut ask(), stdout) else {
            return clients;
        };
        answered(&answer);
        clients += 1;
    }
}

/// Bytes waiting in a pipe (FIONREAD) and what it holds at most
/// (F_GETPIPE_SZ), seen from its read end.
pub fn pipe_fill(pipe: &OwnedFd) -> (usize, usize) {
    let mut waiting: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer we pass; `pipe`
    // is open (we own it). (nix has no safe wrapper for this ioctl.)
    let rc = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut waiting) };
    Errno::result(rc).unwrap_or_else(|err| panic!("pipe_fill: FIONREAD: {err}"));
    let size = fcntl(pipe, FcntlArg::F_GETPIPE_SZ)
        .unwrap_or_else(|err| panic!("pipe_fill: F_GETPIPE_SZ: {err}"));
    (waiting as usize, size as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reaped child's pid may be another process's: no signal goes to it.
    #[test]
    fn a_reaped_child_is_not_signalled() {
        let mut child = Killed(Command::new("sleep").arg("100").spawn().unwrap());
        child.signal(libc::SIGTERM);
        let status = child.wait_exit(Duration::from_secs(20)).expect("exits");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        // Refused before kill(2), which would find the pid free (ESRCH) or,
        // reused, another process.
        let again = std::panic::catch_unwind(|| child.signal(libc::SIGTERM))
            .expect_err("signalled a reaped child");
        let why = again.downcast_ref::<String>().unwrap();
        assert!(why.contains("not a child left"), "{why}");
    }
}
