//! Example 16: the same server on io_uring.
//!
//! Every server so far asked the kernel *when*: epoll_wait says which
//! sockets are ready, and then the server makes each call itself (accept,
//! read, write), one system call each. io_uring asks for *what*: the server
//! writes the operations themselves ("accept on this socket", "receive into
//! this buffer", "send these bytes", "close this fd") into a submission
//! queue, and the kernel writes what each achieved (a new fd, the number of
//! bytes received or sent, or an error) into a completion queue. Both
//! queues are memory the process shares with the kernel; one system call,
//! io_uring_enter(2), hands over what was queued and sleeps until
//! completions come.
//!
//! | example 4 (epoll)                         | this example (io_uring)                             |
//! | ----------------------------------------- | --------------------------------------------------- |
//! | epoll_create1                             | io_uring_setup: the ring, an fd and mapped queues   |
//! | EPOLLIN on the listener, accept4 to EAGAIN | one multishot accept: a completion per client, with its fd |
//! | EPOLLIN on a connection, read to EAGAIN   | a recv into its buffer: the completion says how many bytes |
//! | epoll_ctl(MOD) to EPOLLOUT, then write    | a send: the completion says how many bytes went     |
//! | epoll_ctl(DEL), close                     | a close                                             |
//! | epoll_wait                                | io_uring_enter, which also submits                  |
//! | the 64-bit token of each event            | the 64-bit user_data of each operation              |
//!
//! Run it with `cargo run -p example16_io_uring`, then `curl
//! http://127.0.0.1:8080/`. Add `-- --trace` to see every submission and
//! every completion. Where the kernel refuses io_uring (a container's
//! seccomp profile, the sysctl kernel.io_uring_disabled, an old kernel),
//! the server says which, and exits with status 1.

mod setup;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use clap::Parser;
use common::{ACCEPT_PAUSE, EpollArgs, PendingResponse, Progress, RequestBuffer, is_transient};
use io_uring::types::{Fd, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use nix::errno::Errno;
use nix::libc;

/// Example 16: the tutorial's server on io_uring. Accepting, receiving,
/// sending and closing are operations submitted to the kernel; the loop
/// handles their completions. Stop it with Ctrl-C (SIGINT) or SIGTERM: it
/// cancels what is in flight, closes its sockets and exits with status 0.
#[derive(Parser)]
#[command(version, mut_arg("trace", |arg| arg.help(
    "Print every submission the loop queues and every completion the \
     kernel returns, to stderr: `submit recv 3/1`, then `complete recv \
     3/1: 79` (the operation; the connection's slot and generation, \
     decoded from user_data; the result: bytes, an fd, or -errno). \
     `more` marks a completion of a multishot operation that stays armed"
)))]
struct Args {
    #[command(flatten)]
    epoll: EpollArgs,

    /// Accept with one single-shot accept submission per client, as on
    /// kernels before 5.19, instead of one multishot accept for them all.
    /// (Where the kernel lacks multishot accept, the server does this by
    /// itself.)
    #[arg(long)]
    no_multishot: bool,
}

// ANCHOR: sizes
/// Submission queue entries: how many operations can wait in the queue
/// for the next io_uring_enter(2). Not a limit on operations in flight:
/// the kernel takes each entry in as it is submitted, and the slot is free
/// again. When it is full, the loop submits to make room (`Ring::push`).
const SUBMISSION_ENTRIES: u32 = 4096;

/// Completion queue entries: how many completions the kernel can post
/// before the loop reads them. Each connection has exactly one operation
/// in flight, so 10,000 idle clients that reset at once post 10,000
/// completions together: this holds three times that. Past it, the kernel
/// keeps completions aside until there is room (IORING_FEAT_NODROP,
/// io_uring_setup(2)).
const COMPLETION_ENTRIES: u32 = 32 * 1024;

/// Each connection's receive buffer, as large as example 4's. Example 4
/// read into one buffer on its stack; here the kernel writes into a
/// connection's buffer whenever its bytes arrive, so every connection
/// with a recv in flight holds one: 10,000 idle clients hold 10 MiB.
const BUFFER: usize = 1024;

/// How long accepting pauses when accept fails for a lasting reason (out
/// of descriptors): common::ACCEPT_PAUSE, as a timeout operation's
/// timespec. A static, since the kernel reads it when the operation is
/// submitted, after the call that queued it has returned.
static PAUSE: Timespec = Timespec::new()
    .sec(ACCEPT_PAUSE.as_secs())
    .nsec(ACCEPT_PAUSE.subsec_nanos());
// ANCHOR_END: sizes

// ANCHOR: token
/// What an operation is: the low 8 bits of its user_data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// A single-shot accept: one completion, one client.
    Accept = 1,
    /// A multishot accept: a completion for every client, until one comes
    /// without IORING_CQE_F_MORE.
    AcceptMultishot,
    /// The pause after accept ran out of file descriptors: a timeout.
    Pause,
    /// A poll on the stop signals' signalfd.
    Stop,
    Recv,
    Send,
    Close,
    /// A cancellation of another operation, when the server stops.
    Cancel,
}

/// The 64 bits the kernel copies from a submission into its completion,
/// untouched: how the loop knows what completed, and for whom.
///
/// | bits 63-40 | bits 39-8 | bits 7-0  |
/// | ---------- | --------- | --------- |
/// | generation | slot      | operation |
///
/// The slot says which connection (an index into the loop's slots), the
/// generation which of the connections that slot has held: a completion
/// whose generation is not the slot's is stale, and is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Token {
    op: Op,
    slot: usize,
    generation: u32,
}

/// Generations count in 24 bits, then wrap.
const GENERATIONS: u32 = 1 << 24;

impl Token {
    /// The token of an operation that belongs to no connection.
    fn of(op: Op) -> Token {
        Token {
            op,
            slot: 0,
            generation: 0,
        }
    }

    fn user_data(self) -> u64 {
        (u64::from(self.generation) << 40) | ((self.slot as u64) << 8) | self.op as u64
    }

    fn from_user_data(user_data: u64) -> Option<Token> {
        let op = Op::ALL
            .into_iter()
            .find(|op| *op as u64 == user_data & 0xff)?;
        Some(Token {
            op,
            slot: ((user_data >> 8) & 0xffff_ffff) as usize,
            generation: (user_data >> 40) as u32,
        })
    }
}
// ANCHOR_END: token

impl Op {
    const ALL: [Op; 8] = [
        Op::Accept,
        Op::AcceptMultishot,
        Op::Pause,
        Op::Stop,
        Op::Recv,
        Op::Send,
        Op::Close,
        Op::Cancel,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Accept => "accept",
            Op::AcceptMultishot => "accept-multishot",
            Op::Pause => "pause",
            Op::Stop => "stop-poll",
            Op::Recv => "recv",
            Op::Send => "send",
            Op::Close => "close",
            Op::Cancel => "cancel",
        }
    }

    fn is_accept(self) -> bool {
        matches!(self, Op::Accept | Op::AcceptMultishot)
    }
}

/// `recv 3/1` for an operation of the connection in slot 3, generation 1;
/// the name alone for the others; `cancel 3/1` or `cancel accept` for a
/// cancellation.
impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.generation == 0 {
            return match self.op {
                // A cancellation of an operation that belongs to no
                // connection keeps that operation in its slot field.
                Op::Cancel => {
                    let target = Op::ALL.into_iter().find(|op| *op as usize == self.slot);
                    write!(f, "cancel {}", target.map_or("?", Op::name))
                }
                op => f.write_str(op.name()),
            };
        }
        write!(f, "{} {}/{}", self.op.name(), self.slot, self.generation)
    }
}

// ANCHOR: connection
/// What the server holds for one client.
struct Connection {
    /// The socket, until its close is submitted: from then on the fd is
    /// the kernel's to close.
    socket: Option<OwnedFd>,
    /// Where a recv puts the bytes. Boxed, so that it stays at one address
    /// while the slots move (a Vec grows by moving): the kernel holds a
    /// pointer to it for as long as the recv is in flight.
    buffer: Box<[u8; BUFFER]>,
    request: RequestBuffer,
    response: PendingResponse,
    /// The one operation in flight for it: a recv, a send or a close.
    op: Op,
}
// ANCHOR_END: connection

// ANCHOR: slots
/// The connections, each in a slot of a vector, found by the slot number
/// in a completion's user_data. A slot is reused once its connection has
/// gone, with its generation one higher.
#[derive(Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    connection: Option<Connection>,
}

impl Slots {
    /// Puts `connection` in a free slot, and returns the slot's number.
    fn insert(&mut self, connection: Connection) -> usize {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::default());
            self.slots.len() - 1
        });
        let entry = &mut self.slots[slot];
        // 1, 2, ... GENERATIONS - 1, then 1 again: 0 is no connection's.
        entry.generation = entry.generation % (GENERATIONS - 1) + 1;
        entry.connection = Some(connection);
        slot
    }

    /// The connection a completion is for, or None if the completion is
    /// stale: its slot is empty, or holds a later connection.
    fn get_mut(&mut self, token: Token) -> Option<&mut Connection> {
        let entry = self.slots.get_mut(token.slot)?;
        if entry.generation != token.generation {
            return None;
        }
        entry.connection.as_mut()
    }

    /// The token of an operation `op` for the connection in `slot`.
    fn token(&self, slot: usize, op: Op) -> Token {
        Token {
            op,
            slot,
            generation: self.slots[slot].generation,
        }
    }

    /// Forgets the connection in `slot` (its socket is closed by then).
    fn remove(&mut self, slot: usize) {
        self.slots[slot].connection = None;
        self.free.push(slot);
    }

    /// The token of each connection's operation in flight.
    fn in_flight(&self) -> impl Iterator<Item = Token> + '_ {
        self.slots.iter().enumerate().filter_map(|(slot, entry)| {
            let connection = entry.connection.as_ref()?;
            Some(Token {
                op: connection.op,
                slot,
                generation: entry.generation,
            })
        })
    }
}
// ANCHOR_END: slots

// ANCHOR: main
fn main() -> common::MainResult {
    let args = Args::parse();
    // Block SIGINT and SIGTERM, so that from here on they wait in a
    // signalfd instead of killing the process (see common::signals).
    let stop = common::stop_signals()?;
    // io_uring_setup(2), before the listening socket: where the kernel
    // refuses io_uring, the server says why before it says `listening on`.
    let (ring, probe) = setup::ring(SUBMISSION_ENTRIES, COMPLETION_ENTRIES)?;
    // Unlike every epoll example, the listener and the connections stay
    // blocking. io_uring never blocks the thread on them: it tries each
    // operation without waiting, and if that cannot go on, waits for the
    // socket inside the kernel and tries again. On an O_NONBLOCK socket
    // that later try may fail with EAGAIN instead of waiting.
    let listener = common::listen(&args.epoll.server)?;
    // The probe (io_uring_register(IORING_REGISTER_PROBE)) lists the
    // operations this kernel knows, not the flags each takes. Multishot
    // accept, a flag of IORING_OP_ACCEPT, came in Linux 5.19 with the
    // operation IORING_OP_SOCKET: that one stands for it. (A kernel that
    // still refuses the flag fails the accept with EINVAL, and the server
    // falls back then.)
    let multishot = !args.no_multishot && probe.is_supported(opcode::Socket::CODE);

    let mut server = Server {
        ring: Ring::new(ring, args.epoll.trace),
        connections: Slots::default(),
        accept: Accepting::new(listener, multishot),
        quiet: args.epoll.server.quiet,
        stopping: false,
    };
    server.accept.arm(&mut server.ring);
    // Stopping is one more operation: a poll of the signalfd, which
    // completes when SIGINT or SIGTERM is pending. A poll, not a read: a
    // read would take the signal, and common::output gives up a write to
    // a full stdout only while a stop signal is pending.
    let poll = opcode::PollAdd::new(Fd(stop.as_raw_fd()), libc::POLLIN as u32);
    // SAFETY: a poll points at no memory of ours.
    unsafe { server.ring.push(Token::of(Op::Stop), poll.build()) };
    server.run()?;
    // Every operation has completed: dropping the server closes the ring,
    // the listener and the sockets still open, and frees the buffers.
    Ok(())
}
// ANCHOR_END: main

/// The loop's state: the ring, the connections, and how it accepts.
struct Server {
    ring: Ring,
    connections: Slots,
    accept: Accepting,
    quiet: bool,
    /// Set by the stop poll's completion: the loop ends after this batch.
    stopping: bool,
}

impl Server {
    // ANCHOR: run
    /// The loop: submit, wait, handle every completion; until a stop
    /// signal, then cancel what is in flight and wait for it.
    fn run(&mut self) -> io::Result<()> {
        let mut completions = Vec::new();
        loop {
            // io_uring_enter(2): hand the kernel every submission queued
            // since the last call, and sleep until at least one operation
            // has completed.
            self.ring.submit_and_wait()?;
            self.ring.reap(&mut completions)?;
            for completion in completions.drain(..) {
                self.complete(completion);
            }
            if self.stopping {
                return self.stop();
            }
        }
    }
    // ANCHOR_END: run

    // ANCHOR: complete
    /// One completion: find what it was for, and submit what comes next.
    fn complete(&mut self, completion: Completion) {
        let Completion {
            token,
            result,
            more,
        } = completion;
        match token.op {
            Op::Stop => self.stopping = true,
            Op::Accept | Op::AcceptMultishot => self.accepted(token, result, more),
            // The pause is over (its timeout expired: -ETIME): accept
            // again. If descriptors are still short, it fails and pauses
            // again: one try per 100 ms, no spin.
            Op::Pause => self.accept.arm(&mut self.ring),
            Op::Recv | Op::Send | Op::Close => {
                let Some(connection) = self.connections.get_mut(token) else {
                    // A slot is emptied only after its connection's last
                    // completion, so this would be a bug: better a warning
                    // than a response sent to the wrong client.
                    common::warn(format_args!("a stale completion, dropped: {token}"));
                    return;
                };
                let next = match token.op {
                    Op::Recv => received(connection, result, self.quiet),
                    Op::Send => sent(&mut connection.response, result),
                    // The kernel has closed the socket: the slot is free.
                    _ => return self.connections.remove(token.slot),
                };
                self.submit(token.slot, next);
            }
            // Only the stop submits cancellations, and handles their
            // completions itself.
            Op::Cancel => {}
        }
    }
    // ANCHOR_END: complete

    // ANCHOR: accepted
    /// An accept completion: a new client's fd, or why there is none.
    fn accepted(&mut self, token: Token, result: i32, more: bool) {
        if result >= 0 {
            // SAFETY: the kernel has just installed this fd for us, and
            // nothing else owns it.
            let socket = unsafe { OwnedFd::from_raw_fd(result) };
            let slot = self.connections.insert(Connection {
                socket: Some(socket),
                buffer: Box::new([0; BUFFER]),
                request: RequestBuffer::new(),
                response: PendingResponse::whole(),
                op: Op::Recv,
            });
            self.submit(slot, Op::Recv);
        } else if token.op == Op::AcceptMultishot && result == -libc::EINVAL {
            // The probe said yes, the kernel says no: accept one at a time.
            common::warn(format_args!(
                "multishot accept refused, accepting one at a time"
            ));
            self.accept.multishot = false;
        } else {
            let err = io::Error::from_raw_os_error(-result);
            // Out of descriptors (EMFILE), or of memory: the client stays
            // queued and accepting again now would fail again. Pause.
            let lasting = !(common::concerns_one_client(&err) || is_transient(&err))
                && result != -libc::ECANCELED;
            if lasting && !more {
                common::warn(format_args!("accept failed, pausing: {err}"));
                return self.accept.pause(&mut self.ring);
            }
            common::warn(format_args!("accept failed: {err}"));
        }
        // Without IORING_CQE_F_MORE, the accept is over: a single-shot one
        // always, a multishot one when it ended (on an error, say).
        if !more {
            self.accept.arm(&mut self.ring);
        }
    }
    // ANCHOR_END: accepted

    // ANCHOR: submit
    /// Submits the next operation of the connection in `slot`.
    fn submit(&mut self, slot: usize, op: Op) {
        let token = self.connections.token(slot, op);
        let connection = self.connections.get_mut(token).expect("a live slot");
        let fd = Fd(connection.socket.as_ref().map_or(-1, |s| s.as_raw_fd()));
        let entry = match op {
            // recv(2) into the buffer: the completion says how many bytes
            // arrived (0 at the end of the stream), or -errno.
            Op::Recv => {
                opcode::Recv::new(fd, connection.buffer.as_mut_ptr(), BUFFER as u32).build()
            }
            // send(2) of what is left of the response. The completion may
            // say fewer bytes than asked (the send buffer filled up): the
            // rest is the next send.
            Op::Send => {
                let unsent = connection.response.unsent();
                opcode::Send::new(fd, unsent.as_ptr(), unsent.len() as u32).build()
            }
            // close(2): from here on the fd is the kernel's.
            _ => {
                let socket = connection.socket.take().expect("an open socket");
                opcode::Close::new(Fd(socket.into_raw_fd())).build()
            }
        };
        connection.op = op;
        // SAFETY: a recv writes into the connection's boxed buffer, which
        // is freed only after the recv has completed (a slot is emptied
        // when its close completes, and a stop waits for every
        // operation); a send reads the response, which is 'static.
        unsafe { self.ring.push(token, entry) };
    }
    // ANCHOR_END: submit

    // ANCHOR: stop
    /// The stop: cancel every operation in flight, and wait until each
    /// has completed. Until then the kernel may still write into a
    /// connection's buffer: freeing the buffers first would hand it freed
    /// memory, which no borrow checker can see.
    fn stop(&mut self) -> io::Result<()> {
        let targets: Vec<Token> = self
            .connections
            .in_flight()
            .chain(self.accept.in_flight)
            .collect();
        for target in targets {
            // IORING_OP_ASYNC_CANCEL, by user_data. The target completes
            // with -ECANCELED (or with its result, if it finished first).
            let cancel = opcode::AsyncCancel::new(target.user_data()).build();
            // Its own token: the target's slot and generation, or, for the
            // accept or the pause (generation 0), the target's operation.
            let slot = if target.generation == 0 {
                target.op as usize
            } else {
                target.slot
            };
            let token = Token {
                op: Op::Cancel,
                slot,
                generation: target.generation,
            };
            // SAFETY: a cancellation points at no memory of ours.
            unsafe { self.ring.push(token, cancel) };
        }
        let mut completions = Vec::new();
        while self.ring.in_flight > 0 {
            self.ring.submit_and_wait()?;
            self.ring.reap(&mut completions)?;
            for completion in completions.drain(..) {
                // A client accepted before the cancellation took: close it.
                if completion.token.op.is_accept() && completion.result >= 0 {
                    // SAFETY: as in `accepted`.
                    drop(unsafe { OwnedFd::from_raw_fd(completion.result) });
                }
            }
        }
        Ok(())
    }
    // ANCHOR_END: stop
}

/// If the loop ended on an error with operations still in flight, the
/// kernel may still write into their buffers: leak the connections
/// instead of freeing them. (The process exits next, which closes their
/// fds.) After a clean stop nothing is in flight, and they are freed.
impl Drop for Server {
    fn drop(&mut self) {
        if self.ring.in_flight > 0 {
            std::mem::forget(std::mem::take(&mut self.connections));
        }
    }
}

// ANCHOR: received
/// A recv completed with `result`: bytes are in the buffer, or the client
/// has gone. Returns the connection's next operation.
fn received(connection: &mut Connection, result: i32, quiet: bool) -> Op {
    let n = match result {
        // The client closed its side before its request was complete (a
        // complete one would not have asked for more).
        0 => return Op::Close,
        1.. => result as usize,
        // EINTR, or EAGAIN (rare: a retry inside the kernel that gave up):
        // nothing lost, receive again.
        _ if is_transient(&io::Error::from_raw_os_error(-result)) => return Op::Recv,
        // ECONNRESET and friends.
        _ => return Op::Close,
    };
    // The bytes are already here: no readiness to wait for, no read(2)
    // to make, no EAGAIN to look for.
    match connection.request.push(&connection.buffer[..n]) {
        Progress::Incomplete => Op::Recv,
        Progress::Complete => {
            if !quiet {
                common::print_request(&connection.request);
            }
            Op::Send
        }
        Progress::TooLarge => {
            connection.response = PendingResponse::too_large();
            Op::Send
        }
    }
}
// ANCHOR_END: received

// ANCHOR: sent
/// A send completed with `result`: that many bytes of the response went
/// into the socket's send buffer. Returns the next operation.
fn sent(response: &mut PendingResponse, result: i32) -> Op {
    match result {
        1.. => response.advance(result as usize),
        // EINTR or EAGAIN, as for a recv: send again.
        _ if is_transient(&io::Error::from_raw_os_error(-result)) => return Op::Send,
        // EPIPE or ECONNRESET: the client has gone. (0 bytes for a
        // non-empty send would be a socket that takes nothing.)
        _ => return Op::Close,
    }
    // A partial send: send the rest. Once all is sent, close: the kernel
    // sends FIN after the response.
    if response.is_done() {
        Op::Close
    } else {
        Op::Send
    }
}
// ANCHOR_END: sent

// ANCHOR: accepting
/// The accepting side: the listener, which kind of accept the kernel
/// takes, and the accept (or the pause) in flight.
struct Accepting {
    listener: TcpListener,
    multishot: bool,
    in_flight: Option<Token>,
}

impl Accepting {
    fn new(listener: TcpListener, multishot: bool) -> Accepting {
        Accepting {
            listener,
            multishot,
            in_flight: None,
        }
    }

    /// Submits an accept: multishot (one submission, a completion per
    /// client, Linux 5.19) or single-shot (one submission per client).
    fn arm(&mut self, ring: &mut Ring) {
        let listener = Fd(self.listener.as_raw_fd());
        // accept4(2)'s flags: SOCK_CLOEXEC, and not SOCK_NONBLOCK.
        let (op, entry) = if self.multishot {
            let accept = opcode::AcceptMulti::new(listener).flags(libc::SOCK_CLOEXEC);
            (Op::AcceptMultishot, accept.build())
        } else {
            let accept = opcode::Accept::new(listener, std::ptr::null_mut(), std::ptr::null_mut());
            (Op::Accept, accept.flags(libc::SOCK_CLOEXEC).build())
        };
        self.in_flight = Some(Token::of(op));
        // SAFETY: no address is asked for: the accept writes into no
        // memory of ours.
        unsafe { ring.push(Token::of(op), entry) };
    }

    /// Submits the pause: a timeout operation that completes (with
    /// -ETIME) after ACCEPT_PAUSE, when the loop accepts again.
    fn pause(&mut self, ring: &mut Ring) {
        self.in_flight = Some(Token::of(Op::Pause));
        let timeout = opcode::Timeout::new(&PAUSE);
        // SAFETY: the timespec is a static.
        unsafe { ring.push(Token::of(Op::Pause), timeout.build()) };
    }
}
// ANCHOR_END: accepting

/// A completion, copied out of the completion queue.
#[derive(Debug, Clone, Copy)]
struct Completion {
    token: Token,
    /// What the operation returned: a count, an fd, or -errno.
    result: i32,
    /// IORING_CQE_F_MORE: a multishot operation that stays armed.
    more: bool,
}

// ANCHOR: ring
/// The ring, and what the loop needs around it: the submissions that did
/// not fit in the submission queue yet, and how many operations are in
/// flight.
struct Ring {
    ring: IoUring,
    /// Submissions waiting for room in the submission queue, in order.
    waiting: VecDeque<squeue::Entry>,
    /// Operations submitted whose last completion has not been reaped.
    in_flight: usize,
    trace: bool,
}
// ANCHOR_END: ring

impl Ring {
    fn new(ring: IoUring, trace: bool) -> Ring {
        Ring {
            ring,
            waiting: VecDeque::new(),
            in_flight: 0,
            trace,
        }
    }

    // ANCHOR: push
    /// Queues one operation, under `token`, for the next io_uring_enter.
    ///
    /// # Safety
    ///
    /// Any memory `entry` points to (a buffer, a timespec) must stay valid,
    /// and unmoved, until the operation's last completion.
    unsafe fn push(&mut self, token: Token, entry: squeue::Entry) {
        if self.trace {
            trace(format_args!("submit {token}"));
        }
        let entry = entry.user_data(token.user_data());
        self.in_flight += 1;
        // Straight into the shared queue, unless it is full or others wait.
        // SAFETY: the caller's promise.
        if self.waiting.is_empty() && unsafe { self.ring.submission().push(&entry) }.is_ok() {
            return;
        }
        self.waiting.push_back(entry);
    }
    // ANCHOR_END: push

    // ANCHOR: enter
    /// io_uring_enter(2): submits everything queued and waits for one
    /// completion at least (or, while submissions still wait for room,
    /// only submits).
    fn submit_and_wait(&mut self) -> io::Result<()> {
        let want = if self.make_room()? { 1 } else { 0 };
        match self.ring.submit_and_wait(want) {
            Ok(_) => Ok(()),
            // Stopped and continued (Ctrl-Z, then fg): the wait is
            // interrupted (signal(7)). Wait again.
            Err(err) if err.raw_os_error() == Some(libc::EINTR) => Ok(()),
            // The completion queue is full and the kernel keeps
            // completions aside: reap those posted, then submit again.
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            // A completion was lost all the same (io_uring_enter(2):
            // EBADR, the machine critically short of memory).
            Err(err) if err.raw_os_error() == Some(libc::EBADR) => Err(lost(1)),
            Err(err) => Err(err),
        }
    }

    /// Moves waiting submissions into the submission queue, submitting
    /// when it is full to make room. Returns false if some must still
    /// wait (the kernel said EBUSY: completions must be reaped first).
    fn make_room(&mut self) -> io::Result<bool> {
        while !self.waiting.is_empty() {
            {
                let mut queue = self.ring.submission();
                while let Some(entry) = self.waiting.front() {
                    // SAFETY: promised when the entry was pushed.
                    if unsafe { queue.push(entry) }.is_err() {
                        break;
                    }
                    self.waiting.pop_front();
                }
                // Dropping `queue` publishes the new entries to the kernel.
            }
            if self.waiting.is_empty() {
                break;
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(libc::EINTR) => {}
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => return Ok(false),
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }
    // ANCHOR_END: enter

    // ANCHOR: reap
    /// Copies every completion the kernel has posted into `into`.
    fn reap(&mut self, into: &mut Vec<Completion>) -> io::Result<()> {
        let mut queue = self.ring.completion();
        // The completions the kernel had to drop, having no memory to keep
        // them aside. Each was an operation that ended unseen: the server
        // cannot tell which connection is now stuck, and stops.
        if queue.overflow() > 0 {
            return Err(lost(queue.overflow()));
        }
        for entry in &mut queue {
            let Some(token) = Token::from_user_data(entry.user_data()) else {
                common::warn(format_args!(
                    "a completion of no operation of ours: {entry:?}"
                ));
                continue;
            };
            let completion = Completion {
                token,
                result: entry.result(),
                more: cqueue::more(entry.flags()),
            };
            if !completion.more {
                self.in_flight -= 1;
            }
            if self.trace {
                trace_completion(&completion);
            }
            into.push(completion);
        }
        Ok(())
    }
    // ANCHOR_END: reap
}

/// The error that stops the server when the kernel has dropped completions:
/// each was an operation that ended unseen, and the server cannot tell
/// which connection now waits for ever.
fn lost(completions: u32) -> io::Error {
    io::Error::other(format!(
        "the kernel dropped {completions} completion(s), short of memory: the server \
         cannot know which operations ended"
    ))
}

/// Prints a completion for `--trace`: `complete recv 3/1: 79`, or
/// `complete recv 3/1: -104 ECONNRESET`, with `, more` when the operation
/// stays armed.
fn trace_completion(completion: &Completion) {
    let Completion {
        token,
        result,
        more,
    } = *completion;
    // -104 ECONNRESET: the errno's name, as errno(3) lists them.
    let error = match result {
        0.. => String::new(),
        _ => format!(" {:?}", Errno::from_raw(-result)),
    };
    let more = if more { ", more" } else { "" };
    trace(format_args!("complete {token}: {result}{error}{more}"));
}

fn trace(line: fmt::Arguments<'_>) {
    common::output::write_stderr(format!("{line}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_survives_user_data() {
        for op in Op::ALL {
            let token = Token {
                op,
                slot: 4_000_000_000,
                generation: GENERATIONS - 1,
            };
            assert_eq!(Token::from_user_data(token.user_data()), Some(token));
        }
        assert_eq!(Token::from_user_data(0), None);
    }

    fn new_connection() -> Connection {
        Connection {
            socket: None,
            buffer: Box::new([0; BUFFER]),
            request: RequestBuffer::new(),
            response: PendingResponse::whole(),
            op: Op::Recv,
        }
    }

    /// A completion for a slot's earlier connection is recognised as
    /// stale: the slot's generation has moved on.
    #[test]
    fn a_reused_slot_refuses_its_old_connections_completions() {
        let mut slots = Slots::default();
        let first = slots.insert(new_connection());
        let old = slots.token(first, Op::Recv);
        slots.remove(first);
        let second = slots.insert(new_connection());
        assert_eq!(first, second, "the slot is reused");
        assert!(
            slots.get_mut(old).is_none(),
            "a stale completion found a connection"
        );
        assert!(slots.get_mut(slots.token(second, Op::Recv)).is_some());
        slots.remove(second);
        assert!(slots.get_mut(slots.token(second, Op::Recv)).is_none());
    }

    #[test]
    fn a_request_in_pieces_is_answered_once_complete() {
        let mut connection = new_connection();
        let request = b"GET / HTTP/1.0\r\n\r\n";
        connection.buffer[..10].copy_from_slice(&request[..10]);
        assert_eq!(received(&mut connection, 10, true), Op::Recv);
        connection.buffer[..request.len() - 10].copy_from_slice(&request[10..]);
        let rest = (request.len() - 10) as i32;
        assert_eq!(received(&mut connection, rest, true), Op::Send);
        assert_eq!(received(&mut new_connection(), 0, true), Op::Close);
        assert_eq!(
            received(&mut new_connection(), -libc::ECONNRESET, true),
            Op::Close
        );
        assert_eq!(
            received(&mut new_connection(), -libc::EAGAIN, true),
            Op::Recv
        );
    }

    /// A send completion for fewer bytes than asked sends the rest next.
    #[test]
    fn a_partial_send_sends_the_rest() {
        let mut response = PendingResponse::whole();
        let total = response.unsent().len() as i32;
        assert_eq!(sent(&mut response, 10), Op::Send);
        assert_eq!(response.unsent().len() as i32, total - 10);
        assert_eq!(sent(&mut response, total - 10), Op::Close);
        assert_eq!(sent(&mut PendingResponse::whole(), -libc::EPIPE), Op::Close);
        assert_eq!(sent(&mut PendingResponse::whole(), -libc::EAGAIN), Op::Send);
    }
}
