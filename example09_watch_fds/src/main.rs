//! Example 9: epoll watches any file descriptor, not only sockets.
//!
//! epoll does not know what a socket is. It asks each file descriptor's
//! driver "are you ready?" and "wake me when you are", and any driver that
//! can answer (sockets, pipes, terminals, inotify, signalfd, timerfd,
//! eventfd, another epoll) can sit in the same interest list. This program
//! watches four kinds at once in one loop:
//!
//! - a listening socket and the connections it accepts: whatever a `telnet`
//!   or `nc` client types is printed on stdout;
//! - standard input;
//! - with `--watch DIR`, an inotify(7) instance watching a directory;
//! - a signalfd, so that Ctrl-C or SIGTERM ends the loop with status 0.
//!
//! Every event epoll returns is logged on stderr with a timestamp, the fd,
//! what the fd is and the names of its flags (`EPOLLIN|EPOLLRDHUP`), so you
//! can watch the kernel talk.
//!
//! stdout and stderr are file descriptors too, and can block: common::output
//! makes sure a stdout nobody reads cannot stop Ctrl-C from working.
//!
//! Run it with `cargo run -p example09_watch_fds -- --watch /tmp`, then in a
//! second terminal `nc 127.0.0.1 8080` and type, or `touch /tmp/x`, or type
//! into the first terminal.

mod timestamp;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use common::ServerArgs;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

/// Example 9: one epoll loop watching a listening socket and its clients,
/// standard input, a directory (inotify) and the stop signals, logging every
/// event. Connect with `nc 127.0.0.1 8080` and type: the text appears on
/// stdout. Stop it with Ctrl-C (SIGINT) or SIGTERM: it exits with status 0.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    /// Also watch this directory with inotify(7) and log what happens in it
    /// (files created, written, moved, deleted).
    #[arg(long, value_name = "DIR")]
    watch: Option<PathBuf>,
}

// ANCHOR: watched
/// What one watched file descriptor is, and the object that owns it.
///
/// The Python keeps a dict of client sockets and compares each event's fd
/// with the listener's. Here one map from fd to this enum says what every fd
/// is, so each log line can name it and each event goes to the right code.
/// Removing an entry drops its object, which closes the fd (stdin aside:
/// `io::Stdin` is a handle that never closes fd 0).
enum Watched {
    Listener(TcpListener),
    Client { stream: TcpStream, peer: SocketAddr },
    Stdin(io::Stdin),
    Inotify { inotify: Inotify, dir: PathBuf },
    Signals(SignalFd),
}
// ANCHOR_END: watched

impl Watched {
    /// The fd's kind and name, as the log shows it.
    fn describe(&self) -> String {
        match self {
            Watched::Listener(listener) => match listener.local_addr() {
                Ok(addr) => format!("listener {addr}"),
                Err(_) => "listener".to_owned(),
            },
            Watched::Client { peer, .. } => format!("client {peer}"),
            Watched::Stdin(_) => "stdin".to_owned(),
            Watched::Inotify { dir, .. } => format!("inotify {}", dir.display()),
            Watched::Signals(_) => "signalfd SIGINT|SIGTERM".to_owned(),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Watched::Listener(listener) => listener.as_fd(),
            Watched::Client { stream, .. } => stream.as_fd(),
            Watched::Stdin(stdin) => stdin.as_fd(),
            Watched::Inotify { inotify, .. } => inotify.as_fd(),
            Watched::Signals(signals) => signals.as_fd(),
        }
    }
}

/// What the handling of one event decided.
enum Next {
    /// Keep watching this fd.
    Keep,
    /// Stop watching this fd (and close it, if it is ours).
    Forget,
    /// Start watching a new fd (a client the listener accepted).
    Add(Watched),
    /// Leave the loop: a stop signal arrived.
    Stop,
}

/// The events we ask for on every fd: readable, and (for sockets) "the peer
/// has shut down its sending side". epoll adds EPOLLERR and EPOLLHUP itself.
///
/// The Python registers with no mask, which Python's `epoll.register` takes
/// to mean EPOLLIN|EPOLLPRI|EPOLLOUT. EPOLLOUT ("you may write") is true of
/// an idle connection almost always, so with level-triggered epoll its
/// `e.poll()` returns at once, every time: the loop spins at 100% CPU. Ask
/// only for what you will act on.
const INTEREST: EpollFlags = EpollFlags::EPOLLIN.union(EpollFlags::EPOLLRDHUP);

/// What inotify reports about the watched directory.
const DIR_EVENTS: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MODIFY)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF);

// ANCHOR: main
fn main() -> common::MainResult {
    let args = Args::parse();
    // SIGINT and SIGTERM wait in a file descriptor from now on.
    let stop = common::stop_signals()?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let mut watched: HashMap<RawFd, Watched> = HashMap::new();
    watch(&epoll, &mut watched, Watched::Signals(stop))?;
    watch_stdin(&epoll, &mut watched);
    // The directory watch is in place before the `listening on` line, so a
    // script that waits for that line knows its changes will be seen.
    if let Some(dir) = args.watch {
        // inotify_init1(2): an fd that becomes readable when a watched file
        // or directory changes; each read(2) returns event records.
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // inotify_add_watch(2): report these events for entries of `dir`.
        inotify
            .add_watch(&dir, DIR_EVENTS)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
        watch(&epoll, &mut watched, Watched::Inotify { inotify, dir })?;
    }
    let listener = common::listen(&args.server)?;
    // Level-triggered (the default): an fd is reported in every
    // epoll_wait(2) for as long as it is ready, so one read per event is
    // enough; the next wait reports whatever is left. Non-blocking all the
    // same, so that a spurious event cannot freeze the loop in accept(2).
    listener.set_nonblocking(true)?;
    let listener_fd = listener.as_raw_fd();
    // Out of descriptors, accept(2) would fail again at once for as long as
    // the client waits: the acceptor stops watching the listener for a
    // moment instead of spinning (common::accept says why).
    let mut acceptor = common::Acceptor::new(INTEREST, listener_fd as u64);
    watch(&epoll, &mut watched, Watched::Listener(listener))?;

    let mut events = [EpollEvent::empty(); 64];
    loop {
        // No timeout, except while accepting is paused.
        let ready = match epoll.wait(&mut events, acceptor.timeout()) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        };
        if let Some(Watched::Listener(listener)) = watched.get(&listener_fd) {
            acceptor.resume(&epoll, listener)?;
        }

        for event in &events[..ready] {
            // The token is the fd number, as in the Python. A number is
            // reused once its fd is closed, so an event still queued in this
            // batch for a client just closed could reach a client accepted
            // since under the same number: it would find nothing to read
            // (WouldBlock) and no harm done, but the log would blame the new
            // client. Example 10 uses tokens that are never reused.
            let fd = event.data() as RawFd;
            let flags = event.events();
            let Some(what) = watched.get(&fd) else {
                continue;
            };
            // Every event, logged before it is handled. The Python skips
            // events with POLLOUT set, which (see INTEREST) is all of them.
            log(
                fd,
                &what.describe(),
                common::epoll_flag_names(flags.bits() as u32),
            );

            let next = match what {
                Watched::Listener(listener) => accept(&epoll, &mut acceptor, listener)?,
                Watched::Client { stream, peer } => {
                    on_client(fd, stream, *peer, flags, args.server.quiet)
                }
                Watched::Stdin(stdin) => on_stdin(fd, stdin),
                Watched::Inotify { inotify, dir } => {
                    on_inotify(fd, &dir.display().to_string(), inotify)
                }
                Watched::Signals(signals) => {
                    // read(2) on a signalfd takes the pending signal.
                    if let Ok(Some(info)) = signals.read_signal() {
                        // The signal is taken: output must not wait for
                        // room any more, or a stuck stdout would hold us.
                        common::output::stopping();
                        let name = Signal::try_from(info.ssi_signo as i32)
                            .map_or("a signal", Signal::as_str);
                        note(fd, format_args!("{name}: stopping"));
                    }
                    Next::Stop
                }
            };
            match next {
                Next::Keep => {}
                Next::Add(client) => {
                    if let Err(err) = watch(&epoll, &mut watched, client) {
                        note(fd, format_args!("cannot watch a client: {err}"));
                    }
                }
                Next::Forget => forget(&epoll, &mut watched, fd),
                // Returning drops the map: every socket, the inotify fd,
                // the signalfd and the epoll instance are closed.
                Next::Stop => return Ok(()),
            }
        }
    }
}
// ANCHOR_END: main

// ANCHOR: watch
/// epoll_ctl(EPOLL_CTL_ADD) for any kind of fd, then remember what it is.
fn watch(epoll: &Epoll, watched: &mut HashMap<RawFd, Watched>, what: Watched) -> io::Result<()> {
    let fd = what.fd().as_raw_fd();
    epoll.add(what.fd(), EpollEvent::new(INTEREST, fd as u64))?;
    log(fd, &what.describe(), "watching".to_owned());
    watched.insert(fd, what);
    Ok(())
}
// ANCHOR_END: watch

// ANCHOR: stdin
/// Watches standard input, if epoll can.
///
/// epoll_ctl refuses (EPERM) an fd whose driver cannot report readiness: a
/// regular file (always "ready", so watching it means nothing) and
/// /dev/null, which is what stdin is under `< /dev/null`, under a service
/// manager, and in the tests. Rust's runtime reopens a *closed* stdin on
/// /dev/null before `main`, so "closed" looks the same. Either way we say
/// so and go on without it.
///
/// Stdin stays blocking: O_NONBLOCK belongs to the open file, which a
/// terminal's stdin shares with the shell, and the shell would find it set
/// after we exit. Level-triggered epoll only reports stdin when a read will
/// not block, and we read once per event.
fn watch_stdin(epoll: &Epoll, watched: &mut HashMap<RawFd, Watched>) {
    match watch(epoll, watched, Watched::Stdin(io::stdin())) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(Errno::EPERM as i32) => {
            note(
                0,
                format_args!(
                    "stdin cannot be watched: it is /dev/null or a regular file, \
                     which epoll refuses (EPERM)"
                ),
            );
        }
        Err(err) => note(0, format_args!("stdin cannot be watched: {err}")),
    }
}

/// EPOLLIN (or EPOLLHUP) on stdin: read what was typed and log it.
fn on_stdin(fd: RawFd, stdin: &io::Stdin) -> Next {
    let mut buffer = [0u8; 1024];
    // read(2) on the fd itself, not through std's buffered `Stdin`: a
    // buffer would take more than we log, and epoll, which only knows what
    // is left in the kernel, would not report the rest.
    match nix::unistd::read(stdin.as_fd(), &mut buffer) {
        Ok(0) => {
            // End of file: the pipe's writer closed it, or Ctrl-D on a
            // terminal. A pipe at EOF stays readable forever, so a
            // level-triggered loop that kept watching it would wake at once,
            // every time: stop watching.
            note(fd, format_args!("end of file: no longer watched"));
            Next::Forget
        }
        Ok(n) => {
            let text = buffer[..n].escape_ascii();
            note(fd, format_args!("read {n} bytes: \"{text}\""));
            Next::Keep
        }
        Err(Errno::EAGAIN | Errno::EINTR) => Next::Keep,
        Err(err) => {
            note(fd, format_args!("read failed: {err}: no longer watched"));
            Next::Forget
        }
    }
}
// ANCHOR_END: stdin

// ANCHOR: accept
/// EPOLLIN on the listener: one client is waiting. Take it (level-triggered:
/// if more wait, the next epoll_wait reports the listener again).
fn accept(
    epoll: &Epoll,
    acceptor: &mut common::Acceptor,
    listener: &TcpListener,
) -> io::Result<Next> {
    // `None`: someone else took it, the client left the queue, or accepting
    // just paused for lack of descriptors (common::accept logs why).
    let Some((stream, peer)) = acceptor.accept(epoll, listener)? else {
        return Ok(Next::Keep);
    };
    // O_NONBLOCK on the connection, so that a spurious event cannot freeze
    // the loop in read(2).
    Ok(match stream.set_nonblocking(true) {
        Ok(()) => Next::Add(Watched::Client { stream, peer }),
        Err(err) => {
            note(
                listener.as_raw_fd(),
                format_args!("cannot make {peer} non-blocking: {err}"),
            );
            Next::Keep
        }
    })
}
// ANCHOR_END: accept

// ANCHOR: client
/// An event on a client connection: print what it sent, or notice it left.
fn on_client(
    fd: RawFd,
    mut stream: &TcpStream,
    peer: SocketAddr,
    flags: EpollFlags,
    quiet: bool,
) -> Next {
    let mut buffer = [0u8; 1024];
    // Read even when only EPOLLHUP or EPOLLERR came: read(2) then returns 0
    // or the error (ECONNRESET), which says what happened.
    match stream.read(&mut buffer) {
        Ok(0) => {
            // The client closed its side (FIN): epoll said EPOLLRDHUP, and a
            // read returns 0 bytes now and for ever after. The Python never
            // checks for b'' here: it would print nothing, forever, at 100%
            // CPU, and never close the socket.
            let how = if flags.contains(EpollFlags::EPOLLRDHUP) {
                "EPOLLRDHUP"
            } else {
                "read 0 bytes"
            };
            note(fd, format_args!("client {peer} hung up ({how}): closing"));
            Next::Forget
        }
        Ok(n) => {
            if !quiet {
                // The client's bytes as they came: stdout takes bytes, so
                // text that is not UTF-8 is passed on, not an error. (The
                // Python writes bytes to a text stream: a TypeError.) At
                // once, unbuffered: nothing is kept between reads.
                common::output::write_stdout(&buffer[..n]);
            }
            note(fd, format_args!("read {n} bytes from client {peer}"));
            Next::Keep
        }
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Next::Keep
        }
        Err(err) => {
            // ECONNRESET: the client aborted (RST); epoll said
            // EPOLLIN|EPOLLERR|EPOLLHUP|EPOLLRDHUP, all at once.
            note(fd, format_args!("client {peer} is gone ({err}): closing"));
            Next::Forget
        }
    }
}
// ANCHOR_END: client

// ANCHOR: inotify
/// EPOLLIN on the inotify fd: read the event records and log each one.
fn on_inotify(fd: RawFd, dir: &str, inotify: &Inotify) -> Next {
    let events = match inotify.read_events() {
        Ok(events) => events,
        Err(Errno::EAGAIN | Errno::EINTR) => return Next::Keep,
        Err(err) => {
            note(fd, format_args!("read failed: {err}: no longer watched"));
            return Next::Forget;
        }
    };
    let mut next = Next::Keep;
    for event in events {
        let name = event.name.as_deref().map(OsStr::as_bytes).unwrap_or(b"");
        note(
            fd,
            format_args!(
                "{} \"{}\"",
                inotify_flag_names(event.mask),
                name.escape_ascii()
            ),
        );
        if event.mask.contains(AddWatchFlags::IN_IGNORED) {
            // The kernel removed the watch: the directory was deleted or its
            // file system unmounted. No event will ever come again.
            note(
                fd,
                format_args!("the watch on {dir} is gone: no longer watched"),
            );
            next = Next::Forget;
        }
    }
    next
}
// ANCHOR_END: inotify

/// The names of the bits of an inotify event mask: `IN_CREATE|IN_ISDIR`.
fn inotify_flag_names(mask: AddWatchFlags) -> String {
    const NAMES: &[(AddWatchFlags, &str)] = &[
        (AddWatchFlags::IN_ACCESS, "IN_ACCESS"),
        (AddWatchFlags::IN_MODIFY, "IN_MODIFY"),
        (AddWatchFlags::IN_ATTRIB, "IN_ATTRIB"),
        (AddWatchFlags::IN_CLOSE_WRITE, "IN_CLOSE_WRITE"),
        (AddWatchFlags::IN_CLOSE_NOWRITE, "IN_CLOSE_NOWRITE"),
        (AddWatchFlags::IN_OPEN, "IN_OPEN"),
        (AddWatchFlags::IN_MOVED_FROM, "IN_MOVED_FROM"),
        (AddWatchFlags::IN_MOVED_TO, "IN_MOVED_TO"),
        (AddWatchFlags::IN_CREATE, "IN_CREATE"),
        (AddWatchFlags::IN_DELETE, "IN_DELETE"),
        (AddWatchFlags::IN_DELETE_SELF, "IN_DELETE_SELF"),
        (AddWatchFlags::IN_MOVE_SELF, "IN_MOVE_SELF"),
        (AddWatchFlags::IN_UNMOUNT, "IN_UNMOUNT"),
        (AddWatchFlags::IN_Q_OVERFLOW, "IN_Q_OVERFLOW"),
        (AddWatchFlags::IN_IGNORED, "IN_IGNORED"),
        (AddWatchFlags::IN_ISDIR, "IN_ISDIR"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(flag, _)| mask.contains(*flag))
        .map(|(_, name)| *name)
        .collect();
    names.join("|")
}

// ANCHOR: forget
/// epoll_ctl(EPOLL_CTL_DEL), then drop what the fd was (closing it).
fn forget(epoll: &Epoll, watched: &mut HashMap<RawFd, Watched>, fd: RawFd) {
    if let Some(what) = watched.remove(&fd) {
        let _ = epoll.delete(what.fd());
        // `what` is dropped here: the socket or inotify fd is closed, once.
        // Dropping `io::Stdin` does not close fd 0.
    }
}
// ANCHOR_END: forget

// ANCHOR: log
/// One log line on stderr: `2026-11-24 10:39:19.104Z fd 5 client
/// 127.0.0.1:40000: EPOLLIN|EPOLLRDHUP`. One write per line of up to
/// 1 KiB, so lines never interleave; a closed stderr is ignored, and one
/// that nobody reads does not make the server deaf to Ctrl-C
/// (common::output).
fn log(fd: RawFd, what: &str, message: String) {
    let line = format!("{} fd {fd} {what}: {message}\n", timestamp::now());
    common::output::write_stderr(line.as_bytes());
}

/// A line about what handling an event did, indented under the event.
fn note(fd: RawFd, message: std::fmt::Arguments<'_>) {
    let line = format!("{}   fd {fd}: {message}\n", timestamp::now());
    common::output::write_stderr(line.as_bytes());
}
// ANCHOR_END: log

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inotify_masks_are_named() {
        let mask = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ISDIR;
        assert_eq!(inotify_flag_names(mask), "IN_CREATE|IN_ISDIR");
        assert_eq!(inotify_flag_names(AddWatchFlags::IN_IGNORED), "IN_IGNORED");
    }
}
