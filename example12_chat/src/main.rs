//! Example 12: a chat server, where every client is also a reader that can
//! fall behind.
//!
//! Every server so far wrote a few bytes in answer to a request, so no
//! client was ever sent more than it asked for. Here each line one client
//! sends goes to every other client, whether they read or not. A client
//! that stops reading (`nc` suspended with Ctrl-Z, a laptop lid closed, a
//! program that only sends) is sent lines all the same. The kernel holds a
//! few MiB of them in its socket buffers; after that, the server must keep
//! the rest itself, throw them away, or stop reading from the senders.
//!
//! This one keeps them, in one output queue per client, up to
//! `--max-queue` bytes; a client that falls further behind is disconnected,
//! and the others are told why. EPOLLOUT is watched only while a queue
//! holds something. Lines in have a cap too (`--max-line`).
//!
//! Run it with `cargo run -p example12_chat`, then `nc 127.0.0.1 8080` in
//! two or more terminals, and type. Add `-- --trace` to see every event
//! epoll reports.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use common::{EpollArgs, is_transient, token_of};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

/// Example 12: a line chat for `nc`. Every line a client sends goes to
/// every other client as `client 7: hello`; joins and leaves are announced.
/// Each client has its own output queue, capped by --max-queue. Unless
/// --quiet, it prints a line for each join and leave. Stop it with Ctrl-C
/// (SIGINT) or SIGTERM: it closes its sockets and exits with status 0.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    epoll: EpollArgs,

    /// How many bytes a client may be owed beyond what the kernel holds
    /// for it, before it is disconnected. The kernel's buffers take the
    /// first few MiB (on loopback, up to 4 MiB of send buffer and the
    /// client's receive buffer); a client that reads, even slowly, stays
    /// close to that. 1 MiB is about 13,000 lines of 80 bytes: far more
    /// than any person falls behind, while 1,000 stopped clients cost at
    /// most 1 GiB.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..))]
    max_queue: u64,

    /// The longest line a client may send, its newline included. A longer
    /// one is refused: the client is told, and disconnected. 4096 is what a
    /// terminal in canonical mode sends at most (termios(3)), so `nc` typed
    /// into never reaches it.
    #[arg(long, default_value_t = 4096, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..))]
    max_line: u64,

    /// Announce joins and leaves while at most N clients are connected.
    /// Each announcement is a line to every client: N clients joining one
    /// by one cost N*N/2 lines, 50 million for 10,000.
    #[arg(long, default_value_t = 100, value_name = "N")]
    announce_limit: usize,
}

/// How much one read(2) takes from a sender: the most that one broadcast
/// carries (plus a name per line).
const READ_SIZE: usize = 16 * 1024;

/// At most this many parts of a queue go to one writev(2).
const WRITE_PARTS: usize = 64;

// ANCHOR: client
/// What the server holds for one client.
struct Client {
    stream: TcpStream,
    /// `client 7`: a number that no other client of this run has had (the
    /// fd number is reused as soon as a client leaves).
    name: String,
    /// The line being received: bytes since the last newline.
    line: Vec<u8>,
    /// What this client is owed, oldest first. Each part is shared with
    /// every other client it was sent to: a broadcast is one allocation,
    /// and each queue holds a pointer to it (`Rc`: a count of holders, the
    /// bytes freed when the last one lets go).
    queue: VecDeque<Rc<[u8]>>,
    /// How many bytes of the front part have been written already.
    written: usize,
    /// Bytes in `queue` not written yet: what --max-queue caps.
    owed: usize,
    /// Whether EPOLLOUT is in this client's interest: exactly while
    /// `queue` is not empty.
    watching_out: bool,
    /// A write failed (ECONNRESET, EPIPE): the client has gone, and
    /// nothing more is queued or written for it. It is removed where its
    /// reads end, not here: a reset raises EPOLLERR and EPOLLHUP on its
    /// socket, and the read that event calls for first passes on the
    /// lines it sent before it went, still in the kernel.
    gone: bool,
}
// ANCHOR_END: client

/// Why a client leaves: what the others are told, and the server's log.
enum Leaving {
    /// It closed its side (read returned 0).
    HungUp,
    /// A read failed: ECONNRESET, most often.
    Failed(io::Error),
    /// It was owed more than --max-queue.
    FellBehind(usize),
    /// It sent a line longer than --max-line.
    LineTooLong,
}

/// The clients, and what the room's rules are.
struct Room {
    clients: HashMap<u64, Client>,
    joined: u64,
    max_queue: usize,
    max_line: usize,
    announce_limit: usize,
    quiet: bool,
}

// ANCHOR: main
fn main() -> common::MainResult {
    let args = Args::parse();
    // Block SIGINT and SIGTERM before anything else, so that from here on
    // they wait in a file descriptor (signalfd) instead of killing the
    // process. See common::signals.
    let stop = common::stop_signals()?;
    let listener = common::listen(&args.epoll.server)?;
    // O_NONBLOCK: accept(2) on this socket now fails with EAGAIN
    // (io::ErrorKind::WouldBlock) instead of waiting for a client.
    listener.set_nonblocking(true)?;
    // epoll tells us which file descriptor is ready by returning the 64-bit
    // token we registered it with. Like the Python, we use the fd number.
    let listener_token = token_of(&listener);

    // epoll_create1(2): a new epoll instance, itself a file descriptor. It
    // holds the interest list (what we watch) and the ready list (the
    // watched fds the kernel has found ready, for epoll_wait to hand out).
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    // epoll_ctl(EPOLL_CTL_ADD): watch the listener for EPOLLIN, which on a
    // listening socket means "a connection is waiting in the accept queue".
    // EPOLLET: report it when a new connection arrives, not for as long as
    // the queue is not empty.
    let edge_in = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
    epoll.add(&listener, EpollEvent::new(edge_in, listener_token))?;
    // Takes clients off the queue, and stops watching the listener for a
    // moment when accept(2) runs out of file descriptors, instead of
    // stranding the queue (common::accept says why).
    let mut acceptor = common::Acceptor::new(edge_in, listener_token);

    // Stopping is one more event in the same loop: the signalfd made at
    // the start of `main` becomes readable when SIGINT or SIGTERM arrives.
    let stop_token = token_of(&stop);
    epoll.add(&stop, EpollEvent::new(EpollFlags::EPOLLIN, stop_token))?;

    let mut room = Room {
        clients: HashMap::new(),
        joined: 0,
        max_queue: usize::try_from(args.max_queue)?,
        max_line: usize::try_from(args.max_line)?,
        announce_limit: args.announce_limit,
        quiet: args.epoll.server.quiet,
    };
    let mut events = [EpollEvent::empty(); 64];
    loop {
        // epoll_wait(2): sleep until at least one watched fd is ready, and
        // fill `events` with up to 64 of them. No timeout, except while
        // accepting is paused. SIGINT and SIGTERM do not interrupt the
        // wait (they are blocked, and wait in the signalfd), but a stop and
        // continue does (Ctrl-Z, then fg): EINTR (signal(7)), which nix
        // returns as an error. Just wait again.
        let ready = match epoll.wait(&mut events, acceptor.timeout()) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        };
        acceptor.resume(&epoll, &listener)?;

        for event in &events[..ready] {
            let (token, flags) = (event.data(), event.events());
            if args.epoll.trace {
                common::trace_event(token, flags.bits() as u32);
            }

            if token == stop_token {
                // Returning drops the room, the epoll instance and the
                // listener: every fd is closed, as the Python's `finally`
                // blocks do.
                return Ok(());
            }
            // ANCHOR: accept
            if token == listener_token {
                // Edge-triggered: this one event may stand for many queued
                // clients, and no second event comes for them. Accept until
                // the queue is empty: `None` is EAGAIN (or accepting just
                // paused, and re-arming the listener makes a fresh edge).
                while let Some((stream, address)) = acceptor.accept(&epoll, &listener)? {
                    room.join(&epoll, stream, address);
                }
                continue;
            }
            // ANCHOR_END: accept

            // ANCHOR: dispatch
            // The event's flags say what became possible; the calls below
            // find out what is. So an event left over for a client that
            // has gone, and whose fd number a new client got in the same
            // batch, costs that client a read or a write that says EAGAIN,
            // nothing more. EPOLLHUP and EPOLLERR (reported whatever we ask
            // for) show up as a read of 0 or an error.
            if flags.contains(EpollFlags::EPOLLOUT) {
                room.on_writable(&epoll, token);
            }
            if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
                room.on_readable(&epoll, token);
            }
            // ANCHOR_END: dispatch
        }
    }
}
// ANCHOR_END: main

impl Room {
    // ANCHOR: join
    /// A new client: watch it for input, greet it, and tell the others.
    fn join(&mut self, epoll: &Epoll, stream: TcpStream, address: SocketAddr) {
        let token = token_of(&stream);
        let watched = stream.set_nonblocking(true).and_then(|()| {
            // EPOLLIN only: this client is owed nothing yet. With
            // EPOLLOUT, epoll would report its socket writable along with
            // its other events, and after some of our writes: wakeups for
            // nothing (`flush` adds EPOLLOUT when it is needed).
            let interest = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, token);
            epoll.add(&stream, interest).map_err(io::Error::from)
        });
        if let Err(err) = watched {
            common::warn(format_args!("cannot watch a new connection: {err}"));
            return;
        }
        self.joined += 1;
        let mut client = Client {
            stream,
            name: format!("client {}", self.joined),
            line: Vec::new(),
            queue: VecDeque::new(),
            written: 0,
            owed: 0,
            watching_out: false,
            gone: false,
        };
        let others = match self.clients.len() {
            1 => "1 other client".to_owned(),
            n => format!("{n} other clients"),
        };
        let welcome = format!("you are {}; {others} here\n", client.name);
        // A new socket's send buffer has room: this write goes through.
        let _ = client.send(epoll, token, welcome.into_bytes().into(), self.max_queue);
        self.log(format_args!("{} joined from {address}", client.name));
        let notice = format!("{} joined\n", client.name);
        self.clients.insert(token, client);
        if self.clients.len() <= self.announce_limit {
            self.broadcast(epoll, Some(token), notice.into_bytes());
        }
    }
    // ANCHOR_END: join

    // ANCHOR: readable
    /// EPOLLIN (or a hang-up): read what the client sent, and pass each
    /// complete line on to everyone else.
    fn on_readable(&mut self, epoll: &Epoll, token: u64) {
        let mut buffer = [0u8; READ_SIZE];
        // Edge-triggered: read until EAGAIN. A broadcast goes out after
        // each read, so a sender with megabytes waiting in its socket does
        // not pile them all into the queues before anyone is written to.
        loop {
            let Some(client) = self.clients.get_mut(&token) else {
                return;
            };
            let n = match client.stream.read(&mut buffer) {
                Ok(0) => {
                    // The client closed its side. A last line without its
                    // newline is still a line.
                    if !client.line.is_empty() {
                        let mut last = client.name.clone().into_bytes();
                        last.extend_from_slice(b": ");
                        last.append(&mut client.line);
                        last.push(b'\n');
                        self.broadcast(epoll, Some(token), last);
                    }
                    self.leave(epoll, token, Leaving::HungUp);
                    return;
                }
                Ok(n) => n,
                // EAGAIN: all read. The next bytes make the next edge.
                Err(err) if is_transient(&err) => return,
                Err(err) => {
                    self.leave(epoll, token, Leaving::Failed(err));
                    return;
                }
            };
            let (lines, too_long) = client.take_lines(&buffer[..n], self.max_line);
            if !lines.is_empty() {
                self.broadcast(epoll, Some(token), lines);
            }
            if too_long {
                self.leave(epoll, token, Leaving::LineTooLong);
                return;
            }
        }
    }
    // ANCHOR_END: readable

    // ANCHOR: broadcast
    /// Queues `bytes` (whole lines) for every client but `from`, and
    /// writes each what its socket takes now.
    ///
    /// The bytes are copied once, into one shared buffer; each queue gets
    /// a pointer to it. Sending them can end a client (its queue passes
    /// the cap), and its leaving is news for the others: another
    /// broadcast. So this loop only notes who must go, and they go
    /// after it: removing entries from the map while iterating over it is
    /// what the borrow checker forbids, and for good reason.
    fn broadcast(&mut self, epoll: &Epoll, from: Option<u64>, bytes: Vec<u8>) {
        let mut news = VecDeque::from([(from, bytes)]);
        while let Some((from, bytes)) = news.pop_front() {
            let shared: Rc<[u8]> = bytes.into();
            let mut leaving = Vec::new();
            for (&token, client) in &mut self.clients {
                if Some(token) == from {
                    continue;
                }
                if let Err(why) = client.send(epoll, token, Rc::clone(&shared), self.max_queue) {
                    leaving.push((token, why));
                }
            }
            for (token, why) in leaving {
                news.extend(self.remove(epoll, token, why).map(|notice| (None, notice)));
            }
        }
    }
    // ANCHOR_END: broadcast

    // ANCHOR: writable
    /// EPOLLOUT: the client's socket has room again; write what it is owed.
    fn on_writable(&mut self, epoll: &Epoll, token: u64) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        client.flush(epoll, token);
    }
    // ANCHOR_END: writable

    /// A client leaves: remove it, and tell the others.
    fn leave(&mut self, epoll: &Epoll, token: u64, why: Leaving) {
        if let Some(notice) = self.remove(epoll, token, why) {
            self.broadcast(epoll, None, notice);
        }
    }

    // ANCHOR: remove
    /// Removes a client and closes its socket. Returns the line that tells
    /// the others, if the room is small enough to announce it.
    fn remove(&mut self, epoll: &Epoll, token: u64, why: Leaving) -> Option<Vec<u8>> {
        let mut client = self.clients.remove(&token)?;
        let _ = epoll.delete(&client.stream);
        let reason = match &why {
            Leaving::HungUp => String::new(),
            Leaving::Failed(err) => format!(" ({err})"),
            Leaving::FellBehind(owed) => format!(
                " (stopped reading: owed {owed} bytes, over --max-queue {})",
                self.max_queue
            ),
            Leaving::LineTooLong => format!(" (sent a line over --max-line {})", self.max_line),
        };
        match why {
            // It is listening, and may still be owed lines: write what its
            // socket takes now (its epoll entry is gone: no EPOLLOUT).
            // Dropping the stream then closes it, and the kernel sends FIN
            // after those bytes.
            Leaving::HungUp => client.write_queue(),
            // Told why, in the last line it gets: behind what it is still
            // owed, so that no line is cut in two by it, and as far as its
            // socket takes now. Its input is not read to the end, and Linux
            // closes a socket with unread bytes by sending RST, not FIN
            // (tcp_close(), after RFC 2525, section 2.17); the client's
            // kernel still keeps the line for it to read, before it
            // reports the reset.
            Leaving::LineTooLong => {
                let goodbye = format!("your line is over {} bytes: goodbye\n", self.max_line);
                client.push(goodbye.into_bytes().into());
                client.write_queue();
            }
            // Its socket is full, so no last line fits: the others are
            // told instead. A plain close would leave the kernel holding
            // those MiB, trying to deliver them and a FIN to a client that
            // does not read: 344 s, measured here. SO_LINGER on with a
            // zero timeout (socket(7)) makes Linux's close(2) abort the
            // connection instead: RST, and the buffers are freed at once.
            Leaving::FellBehind(_) => {
                let _ = socket2::SockRef::from(&client.stream).set_linger(Some(Duration::ZERO));
            }
            Leaving::Failed(_) => {}
        }
        self.log(format_args!("{} left{reason}", client.name));
        // `client` is dropped here: close(2). Its queue goes with it, and
        // each shared line it held is freed once nobody else holds it.
        let announce = self.clients.len() < self.announce_limit;
        announce.then(|| format!("{} left{reason}\n", client.name).into_bytes())
    }
    // ANCHOR_END: remove

    /// A line for the server's log on stdout, unless --quiet.
    fn log(&self, line: std::fmt::Arguments<'_>) {
        if !self.quiet {
            common::output::write_stdout(format!("{line}\n").as_bytes());
        }
    }
}

impl Client {
    // ANCHOR: lines
    /// Splits what was just read into lines: returns the complete ones,
    /// each with this client's name in front, and whether a line went
    /// over `max_line` bytes (newline included). Bytes after the last
    /// newline wait in `self.line` for the rest of their line. The bytes
    /// are passed on as they came: a chat line need not be UTF-8.
    fn take_lines(&mut self, mut bytes: &[u8], max_line: usize) -> (Vec<u8>, bool) {
        let mut lines = Vec::new();
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = bytes.split_at(end + 1);
            if self.line.len() + line.len() > max_line {
                return (lines, true);
            }
            lines.extend_from_slice(self.name.as_bytes());
            lines.extend_from_slice(b": ");
            lines.append(&mut self.line);
            lines.extend_from_slice(line);
            bytes = rest;
        }
        // The start of a line: with its newline still to come, it must
        // leave room for it.
        if self.line.len() + bytes.len() >= max_line {
            return (lines, true);
        }
        self.line.extend_from_slice(bytes);
        (lines, false)
    }
    // ANCHOR_END: lines

    // ANCHOR: send
    /// Queues `part` for this client, and writes what its socket takes.
    /// `Err` when it is owed more than `max_queue` bytes: it must go.
    fn send(
        &mut self,
        epoll: &Epoll,
        token: u64,
        part: Rc<[u8]>,
        max_queue: usize,
    ) -> Result<(), Leaving> {
        if self.gone {
            return Ok(());
        }
        let was_empty = self.queue.is_empty();
        self.push(part);
        // With parts already waiting, the last write found the socket
        // full, and EPOLLOUT will say when it has room: writing now would
        // only hear EAGAIN again. A client that never reads costs one
        // push here per line, and no system call.
        if was_empty {
            self.flush(epoll, token);
        }
        if self.owed > max_queue {
            return Err(Leaving::FellBehind(self.owed));
        }
        Ok(())
    }
    // ANCHOR_END: send

    /// Puts `part` at the back of the queue.
    fn push(&mut self, part: Rc<[u8]>) {
        self.owed += part.len();
        self.queue.push_back(part);
    }

    // ANCHOR: flush
    /// Writes the queue until it is empty or the socket is full (EAGAIN),
    /// then watches EPOLLOUT if, and only if, something is left.
    fn flush(&mut self, epoll: &Epoll, token: u64) {
        self.write_queue();
        let want_out = !self.queue.is_empty();
        if want_out != self.watching_out {
            // epoll_ctl(EPOLL_CTL_MOD): add EPOLLOUT while bytes wait, and
            // take it away once they are gone. Adding it re-checks
            // readiness, so room that appeared since the EAGAIN is
            // reported at once: no edge is missed.
            let mut flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
            if want_out {
                flags |= EpollFlags::EPOLLOUT;
            }
            match epoll.modify(&self.stream, &mut EpollEvent::new(flags, token)) {
                Ok(()) => self.watching_out = want_out,
                // ENOMEM: nothing could tell us when to write again.
                Err(_) => self.stop_writing(),
            }
        }
    }

    /// Writes the queue until it is empty or the socket is full (EAGAIN).
    fn write_queue(&mut self) {
        while !self.queue.is_empty() && !self.gone {
            // writev(2): up to WRITE_PARTS parts in one system call, the
            // first from where the last write stopped.
            let mut parts = [IoSlice::new(&[]); WRITE_PARTS];
            let mut count = 0;
            for (slot, part) in parts.iter_mut().zip(&self.queue) {
                let start = if count == 0 { self.written } else { 0 };
                *slot = IoSlice::new(&part[start..]);
                count += 1;
            }
            match self.stream.write_vectored(&parts[..count]) {
                Ok(n) if n > 0 => self.advance(n),
                // EAGAIN: the send buffer is full. EPOLLOUT says when the
                // client has read enough to make room.
                Err(err) if is_transient(&err) => break,
                // EPIPE, ECONNRESET: the client has gone (see `gone`).
                _ => self.stop_writing(),
            }
        }
    }
    // ANCHOR_END: flush

    /// Gives up writing to this client: see `gone`.
    fn stop_writing(&mut self) {
        self.gone = true;
        self.queue.clear();
        (self.owed, self.written) = (0, 0);
    }

    /// Forgets the first `n` bytes of the queue, which the kernel took.
    fn advance(&mut self, mut n: usize) {
        self.owed -= n;
        while let Some(front) = self.queue.front() {
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            // The last queue to let go of a part frees it.
            self.queue.pop_front();
        }
    }
}
