//! The lessons of example 12, the chat: every client has an output queue of
//! its own, capped by --max-queue, and EPOLLOUT is watched only while it
//! holds something. Seen from outside, with the kernel's counters:
//!
//! - a client that stops reading is cut off once it is owed more than the
//!   cap, from the server's side too (/proc/net/tcp), and costs the others
//!   nothing: every line reaches every reader, in order per sender, and
//!   the server's peak memory (VmHWM) stays under clients x cap;
//! - a client that reads a byte at a time holds nobody else up;
//! - a client's epoll interest (/proc/PID/fdinfo) has EPOLLOUT exactly
//!   while it is owed bytes.

use std::collections::HashMap;
use std::io::{BufRead, ErrorKind, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use tests::chat::{CHAT, Chatter, Pace, check_numbered, numbered_len, numbered_line, said, text};
use tests::client::PATIENCE;
use tests::process::{epoll_interest, peak_rss_kib, socket_fd, tcp_socket};
use tests::{Server, wait_until};

/// EPOLLOUT's bit in an interest entry's event mask.
const EPOLLOUT: u32 = 0x004;

/// The server's default --max-queue.
const DEFAULT_MAX_QUEUE: usize = 1 << 20;

/// How many numbered lines (0, 1, ...) add up to at least `bytes`.
fn lines_for(bytes: usize) -> u32 {
    let mut total = 0;
    let mut lines = 0;
    while total < bytes {
        total += numbered_len(lines);
        lines += 1;
    }
    lines
}

/// Numbered lines `from..to`, concatenated.
fn numbered_lines(from: u32, to: u32) -> Vec<u8> {
    (from..to).flat_map(numbered_line).collect()
}

/// Sends numbered lines 0..`lines` from `chatter`'s connection, 64 KiB or
/// so per write, in a thread of its own; as client `who` of `pace`, if
/// given (see [`Pace`]).
fn send_numbered(
    chatter: &Chatter,
    lines: u32,
    pace: Option<(Arc<Pace>, usize)>,
) -> thread::JoinHandle<()> {
    let mut stream = chatter.stream.try_clone().unwrap();
    let name = chatter.name.clone();
    thread::spawn(move || {
        let mut seq = 0;
        while seq < lines {
            let end = (seq + 60).min(lines);
            let chunk = numbered_lines(seq, end);
            if let Some((pace, _)) = &pace {
                pace.wait_for_readers();
            }
            std::io::Write::write_all(&mut stream, &chunk)
                .unwrap_or_else(|err| panic!("{name} cannot send: {err}"));
            if let Some((pace, who)) = &pace {
                pace.sent(*who, chunk.len());
            }
            seq = end;
        }
    })
}

/// What one reader got: from each sender, how many numbered lines (checked
/// whole and in order as they came), and the server's notices.
#[derive(Default)]
struct Received {
    lines: HashMap<String, u32>,
    notices: Vec<String>,
}

/// Reads numbered lines until `lines` have come from each of `senders`,
/// checking each line and the order per sender. `progress` counts bytes;
/// `pace`, if given, hears of each line read, as client `who`.
fn receive_numbered(
    chatter: &mut Chatter,
    senders: &[String],
    lines: u32,
    progress: &AtomicUsize,
    pace: Option<(&Pace, usize)>,
) -> Received {
    let mut received = Received::default();
    for sender in senders {
        received.lines.insert(sender.clone(), 0);
    }
    let mut left = senders.len();
    let mut line = Vec::new();
    while left > 0 {
        line.clear();
        let n = chatter
            .reader()
            .read_until(b'\n', &mut line)
            .unwrap_or_else(|err| panic!("{}: {err}", chatter.name));
        assert!(n > 0, "{}: the stream ended", chatter.name);
        progress.fetch_add(n, Ordering::Relaxed);
        let Some((from, payload)) = said(&line) else {
            received.notices.push(text(&line));
            continue;
        };
        let next = received
            .lines
            .get_mut(from)
            .unwrap_or_else(|| panic!("{}: a line from {from}, who sends none", chatter.name));
        let seq = check_numbered(payload).unwrap_or_else(|err| panic!("{}: {err}", chatter.name));
        assert_eq!(
            seq, *next,
            "{}: from {from}, line {seq} came where line {next} was due",
            chatter.name
        );
        *next += 1;
        if *next == lines {
            left -= 1;
        }
        if let Some((pace, who)) = pace {
            pace.read(who, payload.len());
        }
    }
    received
}

/// The fd the server holds for `chatter`'s connection.
fn server_fd(server: &Server, chatter: &Chatter) -> i32 {
    let client = chatter.stream.local_addr().unwrap();
    socket_fd(server.pid(), server.addr(), client)
        .unwrap_or_else(|| panic!("the server holds no socket for {}", chatter.name))
}

/// Whether the server's interest entry for fd `fd` has EPOLLOUT.
fn watches_out(server: &Server, fd: i32) -> bool {
    let events = epoll_interest(server.pid())
        .into_iter()
        .find(|&(watched, _)| watched == fd)
        .unwrap_or_else(|| panic!("no interest entry for fd {fd}"))
        .1;
    events & EPOLLOUT != 0
}

/// 20 clients; one never reads, the other 19 send 50 MB between them
/// (numbered lines of 200 to 1,999 bytes) and read everything the others
/// send, the senders never more than 2 MiB ahead of the slowest reader
/// (so that a reader the machine's load delays is not taken for one that
/// stopped). With the default --max-queue (1 MiB):
/// - every reader gets every line of every other sender, whole and in
///   order: 18 x 2.6 MB each;
/// - the one that never reads is cut off: every reader is told, and the
///   server holds no socket for it any more (/proc/net/tcp: reset, so
///   the kernel frees its buffers at once; its client may never hear the
///   reset, which a zero receive window can drop);
/// - the server's peak RSS (VmHWM) grows by less than 20 clients x
///   1 MiB, the most all queues can hold. It grew by about 1 MiB here;
///   with no cap, by 47 MiB: what the stalled client was owed.
#[test]
fn a_client_that_stops_reading_is_cut_off_and_costs_the_others_nothing() {
    const CLIENTS: usize = 20;
    const FLOOD: usize = 50_000_000;
    let server = Server::start(CHAT, &["--quiet"]);
    let addr = server.addr();
    // A first client comes and goes, so that whatever the server sets up
    // once is in the baseline.
    drop(Chatter::join(addr));
    server.idle_holdings();
    let peak_before = peak_rss_kib(server.pid());

    // The stalled client joins first: every line is sent to it.
    let mut stalled = Chatter::join(addr);
    let stalled_addr = stalled.stream.local_addr().unwrap();
    let chatters: Vec<Chatter> = (1..CLIENTS).map(|_| Chatter::join(addr)).collect();
    let names: Vec<String> = chatters.iter().map(|c| c.name.clone()).collect();
    let lines = lines_for(FLOOD.div_ceil(CLIENTS - 1));

    let progress = Arc::new(AtomicUsize::new(0));
    // Each of the 19 sends and reads; the senders keep within 2 MiB of
    // the slowest reader (see Pace), well inside what the kernel buffers
    // for a reader: the server queues nothing for them, only for the one
    // that does not read.
    let pace = Pace::new(2 << 20, &[true; CLIENTS - 1]);
    let readers: Vec<_> = chatters
        .into_iter()
        .enumerate()
        .map(|(who, mut chatter)| {
            let senders: Vec<String> = names
                .iter()
                .filter(|name| **name != chatter.name)
                .cloned()
                .collect();
            let progress = Arc::clone(&progress);
            let sender = send_numbered(&chatter, lines, Some((Arc::clone(&pace), who)));
            let pace = Arc::clone(&pace);
            thread::spawn(move || {
                let received =
                    receive_numbered(&mut chatter, &senders, lines, &progress, Some((&pace, who)));
                sender.join().unwrap();
                (chatter, received)
            })
        })
        .collect();
    let mut finished = Vec::new();
    for reader in readers {
        finished.push(reader.join().expect("a reader failed"));
    }
    let delivered = progress.load(Ordering::Relaxed);
    let growth_kib = peak_rss_kib(server.pid()).saturating_sub(peak_before);
    eprintln!(
        "{} lines per sender, {delivered} bytes delivered to 19 readers; peak RSS grew by {growth_kib} KiB",
        lines
    );

    let bound_kib = (CLIENTS * DEFAULT_MAX_QUEUE / 1024) as u64;
    assert!(
        growth_kib < bound_kib,
        "the server's peak RSS grew by {growth_kib} KiB, over {bound_kib} KiB \
         (20 clients x --max-queue)"
    );

    // The server's side: no fd for it, and no socket either (reset).
    assert_eq!(
        socket_fd(server.pid(), addr, stalled_addr),
        None,
        "the server still holds the stalled client's socket"
    );
    assert!(
        wait_until(PATIENCE, || tcp_socket(addr, stalled_addr).is_none()),
        "the kernel still holds the server's side of the stalled connection: {:?}",
        tcp_socket(addr, stalled_addr)
    );
    assert_eq!(server.connections(), CLIENTS - 1, "connections held");

    // Every reader was told why the stalled one left.
    let why = format!("{} left (stopped reading: owed ", stalled.name);
    for (chatter, received) in &finished {
        assert!(
            received
                .notices
                .iter()
                .any(|notice| notice.starts_with(&why)),
            "{} was never told that {} was cut off; notices: {:?}",
            chatter.name,
            stalled.name,
            received.notices
        );
    }

    // What the stalled client did get is whole lines, in order per sender,
    // then the end of the stream (the reset, or a FIN).
    let (bytes, end) = stalled.rest();
    assert!(
        end.is_ok()
            || end
                .as_ref()
                .is_err_and(|err| err.kind() == ErrorKind::ConnectionReset),
        "the stalled client's stream ended with {end:?}"
    );
    let whole = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    let mut next: HashMap<&str, u32> = HashMap::new();
    for line in bytes[..whole].split_inclusive(|&b| b == b'\n') {
        if let Some((from, payload)) = said(line) {
            let seq = check_numbered(payload).unwrap_or_else(|err| panic!("stalled: {err}"));
            let due = next.entry(from).or_insert(0);
            assert_eq!(seq, *due, "stalled: from {from}, line {seq} came for {due}");
            *due += 1;
        }
    }
    eprintln!(
        "the stalled client read {} bytes after it was cut off, then {end:?}",
        bytes.len()
    );
}

/// Six readers and a sender; one reader takes a byte per read(2), about a
/// thousand times slower than the others. The sender sends 20 MB (the
/// cap is raised so that the slow one is not cut off): the five others
/// have all of it while the slow one has not read half. Then it reads
/// faster, and gets every line too, in order: nothing was lost while it
/// lagged, it was queued.
#[test]
fn a_client_that_reads_a_byte_at_a_time_slows_nobody_else() {
    const FAST: usize = 5;
    const FLOOD: usize = 20_000_000;
    let server = Server::start(CHAT, &["--quiet", "--max-queue", "100000000"]);
    let addr = server.addr();
    let sender = Chatter::join(addr);
    let mut slow = Chatter::join(addr);
    let fast: Vec<Chatter> = (0..FAST).map(|_| Chatter::join(addr)).collect();
    let lines = lines_for(FLOOD);
    let senders = vec![sender.name.clone()];

    // The slow reader: a byte per read until told to hurry.
    let slow_bytes = Arc::new(AtomicUsize::new(0));
    let hurry = Arc::new(AtomicBool::new(false));
    let slow_reader = {
        let (slow_bytes, hurry) = (Arc::clone(&slow_bytes), Arc::clone(&hurry));
        let mut stream = slow.stream.try_clone().unwrap();
        thread::spawn(move || {
            let mut received = Vec::new();
            let mut byte = [0u8; 1];
            while !hurry.load(Ordering::Relaxed) {
                match stream.read(&mut byte) {
                    Ok(1) => received.push(byte[0]),
                    other => panic!("the slow reader's read: {other:?}"),
                }
                slow_bytes.fetch_add(1, Ordering::Relaxed);
            }
            received
        })
    };
    let fast_readers: Vec<_> = fast
        .into_iter()
        .map(|mut chatter| {
            let senders = senders.clone();
            thread::spawn(move || {
                let progress = AtomicUsize::new(0);
                receive_numbered(&mut chatter, &senders, lines, &progress, None);
                progress.load(Ordering::Relaxed)
            })
        })
        .collect();
    let sending = send_numbered(&sender, lines, None);
    let mut sent = 0;
    for reader in fast_readers {
        sent = reader.join().expect("a fast reader failed");
    }
    let slow_then = slow_bytes.load(Ordering::Relaxed);
    eprintln!("the fast readers got {sent} bytes each; the slow one had {slow_then} by then");
    assert!(
        slow_then < sent / 2,
        "the fast readers finished only once the slow one had read {slow_then} of {sent} bytes"
    );

    // Now the slow one reads faster: what it read byte by byte, then the
    // rest, is every line.
    hurry.store(true, Ordering::Relaxed);
    let first = slow_reader.join().expect("the slow reader failed");
    sending.join().unwrap();
    let mut next = 0;
    let check = |line: &[u8], next: &mut u32| {
        if let Some((_, payload)) = said(line) {
            let seq = check_numbered(payload).unwrap_or_else(|err| panic!("slow: {err}"));
            assert_eq!(seq, *next, "slow: line {seq} came for {next}");
            *next += 1;
        }
    };
    let whole = first
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    for line in first[..whole].split_inclusive(|&b| b == b'\n') {
        check(line, &mut next);
    }
    let mut line = first[whole..].to_vec();
    while next < lines {
        let n = slow.reader().read_until(b'\n', &mut line).unwrap();
        assert!(n > 0, "the slow reader's stream ended at line {next}");
        if line.ends_with(b"\n") {
            check(&line, &mut next);
            line.clear();
        }
    }
}

/// EPOLLOUT is in a client's interest entry (/proc/PID/fdinfo) exactly
/// while the server has bytes queued for it. Nobody is owed anything at
/// first: no EPOLLOUT. A client that does not read while another sends
/// gets EPOLLOUT once its socket is full (and its queue starts); the
/// reader beside it does not keep it. Once the slow one has read
/// everything, EPOLLOUT goes again.
#[test]
fn epollout_is_watched_only_while_a_client_is_owed_bytes() {
    let server = Server::start(CHAT, &["--quiet", "--max-queue", "100000000"]);
    let addr = server.addr();
    let mut sender = Chatter::join(addr);
    let reader = Chatter::join(addr);
    let mut behind = Chatter::join(addr);
    // Each newcomer's join was announced to those before it: wait until
    // both notices were written, so nobody is owed anything.
    sender.until_line(format!("{} joined\n", reader.name).as_bytes());
    sender.until_line(format!("{} joined\n", behind.name).as_bytes());
    // The server's fd for each, looked up once (/proc/net/tcp is long on
    // a machine that has run load tests).
    let fds: Vec<i32> = [&sender, &reader, &behind]
        .iter()
        .map(|chatter| server_fd(&server, chatter))
        .collect();
    let (reader_fd, behind_fd) = (fds[1], fds[2]);
    for (chatter, &fd) in [&sender, &reader, &behind].iter().zip(&fds) {
        assert!(
            wait_until(PATIENCE, || !watches_out(&server, fd)),
            "{} is owed nothing, yet its entry has EPOLLOUT",
            chatter.name
        );
    }

    // The reader reads in a thread until the sender's `end`.
    let end = format!("{}: end\n", sender.name).into_bytes();
    let reading = {
        let end = end.clone();
        let mut reader = reader;
        thread::spawn(move || {
            reader.until_line(&end);
            reader
        })
    };
    // The sender sends until `behind`, which does not read, has a queue.
    let mut seq = 0;
    while !watches_out(&server, behind_fd) {
        assert!(
            seq < lines_for(64 << 20),
            "64 MiB sent and no queue for a non-reader"
        );
        sender.say(&numbered_lines(seq, seq + 60));
        seq += 60;
    }
    let sent = numbered_lines(0, seq).len();
    eprintln!("{} got EPOLLOUT after {sent} bytes", behind.name);
    sender.say(b"end\n");
    let reader = reading.join().expect("the reader failed");
    assert!(
        wait_until(PATIENCE, || !watches_out(&server, reader_fd)),
        "{} has read everything, yet its entry keeps EPOLLOUT",
        reader.name
    );
    assert!(
        watches_out(&server, behind_fd),
        "{} lost EPOLLOUT while owed",
        behind.name
    );

    // `behind` catches up: its queue empties, and EPOLLOUT goes.
    behind.until_line(&end);
    assert!(
        wait_until(PATIENCE, || !watches_out(&server, behind_fd)),
        "{} has read everything, yet its entry keeps EPOLLOUT",
        behind.name
    );
}

/// The same, counted in wakeups: 200 lines to 10 listeners that keep up
/// are 2,000 writes that never fill a socket, so no EPOLLOUT event at
/// all (`--trace` prints every event). An entry that always had EPOLLOUT
/// would be reported writable with every other event of its socket, and
/// on its own (as its client joins, for one), for nothing.
#[test]
fn writes_that_fit_cost_no_epollout_wakeups() {
    let server = Server::start(CHAT, &["--quiet", "--trace"]);
    let addr = server.addr();
    let mut sender = Chatter::join(addr);
    let mut listeners: Vec<Chatter> = (0..10).map(|_| Chatter::join(addr)).collect();
    for seq in 0..200 {
        sender.say(format!("line {seq}\n").as_bytes());
        // One line at a time: each is written before the next is sent.
        let said = format!("{}: line {seq}\n", sender.name).into_bytes();
        for listener in &mut listeners {
            listener.until_line(&said);
        }
    }
    // The trace of every event so far was written before the event was
    // handled, and so before its lines reached the listeners; it may still
    // be in the pipe to us. A last client speaks: once its line is heard,
    // the trace holds its event (its fd is new, so its line is unique),
    // and every event before it.
    let mut last = Chatter::join(addr);
    let last_fd = server_fd(&server, &last);
    last.say(b"done\n");
    let done = format!("{}: done\n", last.name).into_bytes();
    listeners[0].until_line(&done);
    let traced = format!("fd {last_fd}: ");
    assert!(
        server.wait_for_stderr(PATIENCE, |log| log.lines().any(|l| l.starts_with(&traced))),
        "no event traced for the last client (fd {last_fd}):\n{}",
        server.stderr()
    );
    let trace = server.stderr();
    let events = trace.lines().filter(|line| line.starts_with("fd ")).count();
    let outs = trace
        .lines()
        .filter(|line| line.contains("EPOLLOUT"))
        .count();
    eprintln!("{events} events, {outs} with EPOLLOUT");
    assert_eq!(
        outs, 0,
        "EPOLLOUT reported {outs} times for writes that all fit"
    );
}

/// The chat's load generator (loadgen/chat.sh runs it) against the real
/// server: 5 readers, 2 of them sending 2,000 lines each, and a client
/// that never reads. Every line reaches the 4 other readers, and the
/// report carries the server's CPU time and memory. (Speed is measured by
/// loadgen/chat.sh, not here.)
#[test]
fn the_chat_load_generator_delivers_every_line() {
    use loadgen::chat::{ChatConfig, run};
    let server = Server::start(CHAT, &["--quiet"]);
    let config = ChatConfig {
        addr: server.addr(),
        readers: 5,
        senders: 2,
        lines: 2_000,
        line_bytes: 100,
        stalled: 1,
        server_pid: Some(server.pid()),
        timeout: PATIENCE,
    };
    let report = run(&config, "smoke").unwrap_or_else(|err| panic!("{err:#}"));
    assert_eq!(report.lines_delivered, 2_000 * 2 * 4);
    // Each line and its sender's name, `client N: `, at least.
    assert!(report.bytes_delivered >= report.lines_delivered * 110);
    assert!(report.lines_per_s > 0.0);
    assert!(report.server_cpu_ns_per_line.is_some());
    assert!(report.server_peak_rss_kib >= report.server_rss_kib);
    assert!(report.server_rss_kib.is_some());
}
