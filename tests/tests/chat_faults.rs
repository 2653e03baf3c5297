//! Example 12, the chat, under load, faults, bad input and exhaustion: it
//! keeps passing lines on, and leaves nothing behind (after each test its
//! fds, epoll interest entries and connections are back where they
//! started). It speaks no HTTP, so it cannot join the table of servers the
//! robustness, leak and shutdown tests run over; this file is its own,
//! after echo_faults.rs and watch_fds_faults.rs. Its lessons (a client
//! that stops reading, one that reads slowly, EPOLLOUT) are in chat.rs.

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tests::chat::{CHAT, Chatter, Pace, said, text};
use tests::client::{PATIENCE, random_bytes};
use tests::command_line::{assert_help_mentions, assert_refused, command, stderr};
use tests::process::{assert_not_spinning, epoll_interest, fd_count, peak_rss_kib, status};
use tests::raw::{self, Raw};
use tests::{Holdings, Server, connect, wait_until};

/// Starts the chat with `args` (and `--quiet`), has a first client come
/// and go so that everything the server sets up once exists, and returns
/// it with what it holds then.
fn settled_with(
    args: &[&str],
    configure: impl FnOnce(&mut std::process::Command),
) -> (Server, Holdings) {
    let server = Server::start_with(CHAT, &[&["--quiet"], args].concat(), configure);
    drop(Chatter::join(server.addr()));
    let baseline = server.idle_holdings();
    (server, baseline)
}

fn settled() -> (Server, Holdings) {
    settled_with(&[], |_| {})
}

/// Waits until the server holds `baseline` again, then checks that two new
/// clients can still talk, and that it never panicked.
fn assert_back(server: &Server, baseline: Holdings) {
    server.assert_back_to(baseline);
    assert_chats(server.addr());
    server.assert_back_to(baseline);
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

/// Two clients join; a line from one reaches the other.
fn assert_chats(addr: SocketAddr) {
    let mut one = Chatter::join(addr);
    let mut other = Chatter::join(addr);
    one.say(b"still there?\n");
    other.until_line(format!("{}: still there?\n", one.name).as_bytes());
}

/// How many lines of `log` contain `what`.
fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|line| line.contains(what)).count()
}

// --------------------------------------------------------------- load

/// 50 threads, each with 20 clients in turn that join, say one line and
/// leave at once: one client that stays hears all 1,000 lines, each
/// once, and every join and leave. (The room can hold more than 100
/// clients for a moment, those that have gone and whose leaving the
/// server has not read yet: every join and leave is announced only with
/// a higher --announce-limit.)
#[test]
fn a_thousand_clients_come_say_a_line_and_go() {
    const THREADS: usize = 50;
    const EACH: usize = 20;
    let (server, baseline) = settled_with(&["--announce-limit", "2000"], |_| {});
    let addr = server.addr();
    let mut stays = Chatter::join(addr);
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            thread::spawn(move || {
                for round in 0..EACH {
                    let mut chatter = Chatter::join(addr);
                    chatter.say(format!("thread {thread} round {round}\n").as_bytes());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let mut heard = Vec::new();
    let (mut joins, mut leaves) = (0, 0);
    while heard.len() < THREADS * EACH || leaves < THREADS * EACH {
        let mut line = Vec::new();
        let read = std::io::BufRead::read_until(stays.reader(), b'\n', &mut line);
        assert!(
            matches!(read, Ok(1..)),
            "{read:?} after {} lines, {joins} joins and {leaves} leaves",
            heard.len()
        );
        match said(&line) {
            Some((_, words)) => heard.push(String::from_utf8_lossy(words).into_owned()),
            None if line.ends_with(b" joined\n") => joins += 1,
            // `left`, or `left (the error)` for those whose close was a
            // reset: closing with unread bytes (others' joins) sends RST.
            None if line.windows(6).any(|w| w == b" left\n" || w == b" left ") => leaves += 1,
            None => panic!("an unexpected notice: {}", text(&line)),
        }
    }
    assert_eq!(joins, THREADS * EACH, "joins announced");
    heard.sort_unstable();
    let mut expected: Vec<String> = (0..THREADS)
        .flat_map(|t| (0..EACH).map(move |r| format!("thread {t} round {r}\n")))
        .collect();
    expected.sort_unstable();
    assert!(heard == expected, "the lines heard are not the lines said");
    drop(stays);
    assert_back(&server, baseline);
}

/// 10,000 clients that say nothing, and read nothing, cost the server an
/// fd, an interest entry and a few hundred bytes each, and no CPU: one of
/// them speaks, and is heard at once. (Joins are announced only while at
/// most 100 clients are in: beyond that, each join would be a line to
/// thousands.)
#[test]
fn ten_thousand_idle_clients_while_others_talk() {
    const IDLE: usize = 10_000;
    // Our 10,000 fds and the server's: it inherits our limit.
    if let Err(why) = tests::limits::raise_nofile(IDLE as u64 + 1_000) {
        eprintln!("SKIPPED ten_thousand_idle_clients_while_others_talk: {why}");
        return;
    }
    let (server, baseline) = settled();
    let rss_before = status(server.pid()).vmrss.unwrap_or(0);
    let mut idle: Vec<TcpStream> = (0..IDLE).map(|_| connect(server.addr())).collect();
    // The server accepts, then registers: the fd count can be one ahead of
    // the interest list for a moment, so wait for both.
    let (mut fds, mut interest) = (0, 0);
    assert!(
        wait_until(PATIENCE, || {
            fds = fd_count(server.pid());
            interest = epoll_interest(server.pid()).len();
            fds == baseline.fds + IDLE && interest == baseline.interest + IDLE
        }),
        "of {IDLE} clients, {} fds and {} interest entries: one of each per client",
        fds as isize - baseline.fds as isize,
        interest as isize - baseline.interest as isize
    );
    let rss_kib = status(server.pid())
        .vmrss
        .unwrap_or(0)
        .saturating_sub(rss_before);
    eprintln!("{IDLE} idle clients: RSS grew by {rss_kib} KiB");
    assert!(
        rss_kib < 10 * 1024,
        "{IDLE} idle clients cost {rss_kib} KiB: over 1 KiB each"
    );
    assert_not_spinning(server.pid(), CHAT);

    let mut listener = Chatter::join(server.addr());
    idle[IDLE / 2]
        .write_all(b"the idle one in the middle speaks\n")
        .unwrap();
    let lines = listener.until(|line| line.ends_with(b": the idle one in the middle speaks\n"));
    assert!(said(lines.last().unwrap()).is_some(), "{lines:?}");
    drop(idle);
    drop(listener);
    assert_back(&server, baseline);
}

// --------------------------------------------------------------- faults

/// Clients that reset (RST): in the middle of a line, while the server
/// holds a queue for them, and right after joining. Each one leaves (the
/// others are told, with the error), and nobody else notices.
#[test]
fn clients_that_reset() {
    let (server, baseline) = settled_with(&["--max-queue", "100000000"], |_| {});
    let addr = server.addr();
    let mut stays = Chatter::join(addr);
    let mut heard = Vec::new();
    for round in 0..20 {
        // Half a line: never passed on, since it never ended.
        let mut halfway = Chatter::join(addr);
        halfway.say(format!("round {round}: complete\nround {round}: never ends").as_bytes());
        let complete = format!("{}: round {round}: complete\n", halfway.name);
        heard.extend(stays.until(|line| line == complete.as_bytes()));
        halfway.reset();
        // Right after joining.
        Chatter::join(addr).reset();
    }
    // Owed megabytes when it resets: a sender fills its socket first.
    let behind = Chatter::join(addr);
    let mut sender = Chatter::join(addr);
    let line = vec![b'x'; 1000];
    let mut sent = 0;
    while sent < 8 << 20 {
        sender.say(&line);
        sender.say(b"\n");
        sent += line.len() + 1;
    }
    let name = behind.name.clone();
    behind.reset();
    // `stays` hears every leave, the last one `behind`'s (the sender's
    // lines come first: `stays` reads them all).
    heard.extend(stays.until(|line| line.starts_with(format!("{name} left").as_bytes())));
    let resets = heard
        .iter()
        .filter(|line| said(line).is_none() && line.windows(5).any(|w| w == b" left"))
        .count();
    assert!(resets >= 40, "{resets} leaves heard of 41");
    for line in &heard {
        assert!(
            !line.windows(10).any(|w| w == b"never ends"),
            "half a line was passed on: {}",
            text(line)
        );
    }
    drop(sender);
    drop(stays);
    assert_back(&server, baseline);
}

/// Half-close: a client sends its lines, the last without a newline, then
/// shuts down its sending side. Its lines are all passed on (the last one
/// ended by the end of its stream), it is heard leaving, and it reads the
/// end of its own stream: the server closes its side too.
#[test]
fn a_half_closed_client_is_heard_to_its_last_line() {
    let (server, baseline) = settled();
    let mut listener = Chatter::join(server.addr());
    let mut leaving = Chatter::join(server.addr());
    listener.until_line(format!("{} joined\n", leaving.name).as_bytes());
    leaving.say(b"one\ntwo\nthree, with no newline");
    leaving.stream.shutdown(Shutdown::Write).unwrap();
    let name = &leaving.name;
    for expected in [
        format!("{name}: one\n"),
        format!("{name}: two\n"),
        format!("{name}: three, with no newline\n"),
        format!("{name} left\n"),
    ] {
        assert_eq!(text(&listener.line()), text(expected.as_bytes()));
    }
    let (rest, end) = leaving.rest();
    assert!(
        end.is_ok(),
        "the half-closed client's stream ended with {end:?}"
    );
    assert!(rest.is_empty(), "it was sent {}", text(&rest));
    drop((leaving, listener));
    assert_back(&server, baseline);
}

/// Five clients that never read and a cap of 100 KB: one sender's lines
/// pass the cap of all five in the same few broadcasts. Each broadcast
/// notes who must go and lets them go after it (the map of clients is
/// not changed while it is walked): all five are cut off, the reader
/// hears five leaves, and the server lives on.
#[test]
fn five_clients_cut_off_in_the_same_broadcasts() {
    let (server, baseline) = settled_with(&["--max-queue", "100000"], |_| {});
    let addr = server.addr();
    let stalled: Vec<Chatter> = (0..5).map(|_| Chatter::join(addr)).collect();
    let mut reader = Chatter::join(addr);
    let mut sender = Chatter::join(addr);
    let names: Vec<String> = stalled.iter().map(|c| c.name.clone()).collect();
    // The reader is client 0 of the pace, the sender client 1: the sender
    // keeps within 1 MiB of what the reader has read, so that the reader,
    // whose cap is as small, is never taken for one that stopped.
    let pace = Pace::new(1 << 20, &[true, false]);
    let sending = {
        let pace = Arc::clone(&pace);
        thread::spawn(move || {
            let line = [vec![b'y'; 999], vec![b'\n']].concat();
            // Until the five are gone, 20 MB at most.
            for _ in 0..20_000 {
                pace.wait_for_readers();
                if pace.finished() {
                    break;
                }
                sender.say(&line);
                pace.sent(1, line.len());
            }
            sender
        })
    };
    let mut left = Vec::new();
    while left.len() < names.len() {
        let line = reader.line();
        assert!(!line.is_empty(), "the stream ended");
        match said(&line) {
            Some((_, words)) => pace.read(0, words.len()),
            None if line.windows(16).any(|w| w == b" (stopped readin") => left.push(text(&line)),
            None => {}
        }
    }
    pace.finish();
    let sender = sending.join().unwrap();
    for name in &names {
        assert!(
            left.iter()
                .any(|line| line.starts_with(&format!("{name} left"))),
            "{name} was not cut off: {left:?}"
        );
    }
    drop((stalled, reader, sender));
    assert_back(&server, baseline);
}

// --------------------------------------------------------------- bad input

/// Every byte value but the newline, and sequences that are not UTF-8,
/// are passed on as they came, behind the sender's name: a chat line is
/// bytes. So is a megabyte of random bytes, cut into lines at its own
/// newlines.
#[test]
fn binary_bytes_are_passed_on_as_they_are() {
    let (server, baseline) = settled_with(&["--max-line", "100000"], |_| {});
    let mut sender = Chatter::join(server.addr());
    let mut listener = Chatter::join(server.addr());
    let mut line: Vec<u8> = (0..=255u8).filter(|&b| b != b'\n').collect();
    line.extend_from_slice(b"\xff\xfe\xc3(\xed\xa0\x80\r\n");
    sender.say(&line);
    let prefix = format!("{}: ", sender.name).into_bytes();
    let mut heard = listener.until(|got| got.starts_with(&prefix));
    assert_eq!(
        text(&heard.pop().unwrap()),
        text(&[&prefix[..], &line].concat())
    );

    // A megabyte of random bytes, ending with a newline.
    let mut garbage = random_bytes(1 << 20);
    garbage.push(b'\n');
    let writer = {
        let mut stream = sender.stream.try_clone().unwrap();
        let garbage = garbage.clone();
        thread::spawn(move || stream.write_all(&garbage).unwrap())
    };
    let mut got = Vec::new();
    while got.len() < garbage.len() {
        let line = listener.line();
        let words = line
            .strip_prefix(&prefix[..])
            .unwrap_or_else(|| panic!("not {}'s: {}", sender.name, text(&line)));
        got.extend_from_slice(words);
    }
    writer.join().unwrap();
    assert!(got == garbage, "the bytes passed on differ from those sent");
    drop((sender, listener));
    assert_back(&server, baseline);
}

/// A line longer than --max-line is refused: the sender is told, in the
/// last line it gets, and is disconnected; the others hear why. A line of
/// exactly --max-line bytes (newline included) passes. A megabyte with no
/// newline at all is refused the same way, and costs the server no more
/// than --max-line of memory: it never holds the megabyte.
#[test]
fn a_line_past_max_line_is_refused() {
    let (server, baseline) = settled_with(&["--max-line", "100"], |_| {});
    let addr = server.addr();
    let mut listener = Chatter::join(addr);

    let mut fits = Chatter::join(addr);
    let line = [vec![b'a'; 99], vec![b'\n']].concat();
    fits.say(&line);
    let expected = [format!("{}: ", fits.name).into_bytes(), line].concat();
    assert_eq!(
        listener.until_line(&expected).len(),
        1,
        "one join notice before it"
    );

    for (what, bytes) in [
        ("101 bytes", [vec![b'b'; 100], vec![b'\n']].concat()),
        ("a megabyte with no end", vec![b'c'; 1 << 20]),
    ] {
        let peak_before = peak_rss_kib(server.pid());
        let mut long = Chatter::join(addr);
        let writer = {
            let mut stream = long.stream.try_clone().unwrap();
            // The server stops reading once the line is too long, and
            // resets: the rest of the megabyte meets a closed socket.
            thread::spawn(move || {
                let _ = stream.write_all(&bytes);
            })
        };
        let goodbye = long.line();
        assert_eq!(
            text(&goodbye),
            "your line is over 100 bytes: goodbye\\n",
            "{what}"
        );
        let (rest, end) = long.rest();
        assert!(rest.is_empty(), "{what}: then {}", text(&rest));
        assert!(
            end.is_ok() || end.is_err_and(|err| err.kind() == ErrorKind::ConnectionReset),
            "{what}: the stream did not end"
        );
        writer.join().unwrap();
        let why = format!("{} left (sent a line over --max-line 100)\n", long.name);
        let heard = listener.until_line(why.as_bytes());
        assert!(
            heard.iter().all(|line| said(line).is_none()),
            "{what}: part of it was passed on: {:?}",
            heard.iter().map(|l| text(l)).collect::<Vec<_>>()
        );
        let growth_kib = peak_rss_kib(server.pid()).saturating_sub(peak_before);
        assert!(
            growth_kib < 512,
            "{what}: peak memory grew by {growth_kib} KiB"
        );
    }
    drop((listener, fits));
    assert_back(&server, baseline);
}

// --------------------------------------------------------------- exhaustion

/// At RLIMIT_NOFILE 64, 100 clients: accept(2) fails with EMFILE while
/// clients still wait in the queue. The server stops watching the
/// listener for 100 ms at a time (common::Acceptor) instead of retrying at
/// once: it neither dies nor spins, the clients it holds go on talking,
/// and it takes the others once descriptors free up.
#[test]
fn out_of_file_descriptors_neither_kills_nor_spins() {
    let (mut server, baseline) =
        settled_with(&[], |command| tests::limits::limit_nofile(command, 64));
    let addr = server.addr();
    let mut first = Chatter::join(addr);
    let mut second = Chatter::join(addr);
    let queued: Vec<TcpStream> = (0..100).map(|_| connect(addr)).collect();
    assert!(
        server.wait_for_stderr(PATIENCE, |log| log.contains("accept failed, pausing")),
        "no EMFILE reported; holds {} fds:\n{}",
        fd_count(server.pid()),
        server.stderr()
    );
    assert_not_spinning(server.pid(), CHAT);
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "the server died"
    );
    first.say(b"held while out of fds\n");
    second.until_line(format!("{}: held while out of fds\n", first.name).as_bytes());
    drop(queued);
    drop((first, second));
    assert_back(&server, baseline);
    let retries = count(&server.stderr(), "accept failed");
    assert!(retries < 1_000, "{retries} failed accepts logged");
}

// --------------------------------------------------------------- output

/// Starts the chat (printing joins and leaves) with its stdout a pipe of
/// the test's own, read up to the `listening on` line only.
fn spawn_loud() -> Raw {
    raw::start(CHAT, &[], Stdio::null())
}

/// A stdout that nobody reads (`| less` left on its first page) fills up,
/// and the server waits in its log line, serving no one, as the Python's
/// print would. Ctrl-C and SIGTERM still stop it at once, with status 0
/// (common::output waits for room or a stop signal).
#[test]
fn stop_signals_work_while_nobody_reads_stdout() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let Raw {
            mut process,
            addr,
            stdout,
            ..
        } = spawn_loud();
        // Clients join and, having shut down their sending side, leave at
        // once: two log lines each, and the server's close ends each
        // client's stream after its welcome, until the server is stuck
        // printing a line into the full pipe and the next client waits.
        let unread = OwnedFd::from(stdout);
        let clients = raw::fill_stdout(
            &process,
            &unread,
            || {
                let stream = connect(addr);
                stream.shutdown(Shutdown::Write).unwrap();
                stream
            },
            |welcome| assert!(welcome.starts_with(b"you are "), "{}", text(welcome)),
        );
        assert!(raw::nearly_full(&unread), "{:?}", raw::pipe_fill(&unread));
        process.signal(signal);
        let status = process
            .wait_exit(Duration::from_secs(5))
            .unwrap_or_else(|| {
                panic!("signal {signal} did not stop it within 5 s, stdout full after {clients} clients")
            });
        assert_eq!(status.code(), Some(0), "signal {signal}: {status}");
    }
}

/// A stdout whose reader has gone: each log line fails with EPIPE, which
/// Rust turns into an error (it ignores SIGPIPE) and the server into
/// nothing: it goes on passing lines.
#[test]
fn a_closed_stdout_is_no_reason_to_stop() {
    let Raw {
        mut process,
        addr,
        stdout,
        ..
    } = spawn_loud();
    drop(stdout);
    for _ in 0..20 {
        assert_chats(addr);
    }
    assert_eq!(process.wait_exit(Duration::ZERO), None, "the server died");
}

// --------------------------------------------------------------- shutdown

/// SIGINT and SIGTERM stop the chat at once with status 0, even with a
/// client owed megabytes (its queue and EPOLLOUT in its interest) and a
/// line half received: nothing it holds makes it wait. A new run then
/// listens on the same port.
#[test]
fn stop_signals_exit_0_with_a_client_owed_megabytes() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut server = Server::start(CHAT, &["--quiet", "--max-queue", "100000000"]);
        let addr = server.addr();
        let _behind = Chatter::join(addr);
        let mut sender = Chatter::join(addr);
        let line = [vec![b'z'; 999], vec![b'\n']].concat();
        for _ in 0..8_000 {
            sender.say(&line);
        }
        sender.say(b"half a line");
        // Every byte has reached the server's kernel (none unacknowledged).
        assert!(
            wait_until(PATIENCE, || tests::tcp_info(&sender.stream).tcpi_unacked
                == 0),
            "the server did not read the sender"
        );
        let sent = Instant::now();
        server.signal(signal);
        let status = server.wait_exit(PATIENCE).expect("the server did not stop");
        assert_eq!(status.code(), Some(0), "signal {signal}: {status}");
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "signal {signal}: took {:?}",
            sent.elapsed()
        );
        // SO_REUSEADDR: the next run binds the same port at once, its
        // connections in TIME_WAIT or not.
        let again = Server::start(CHAT, &["--quiet", "--addr", &addr.to_string()]);
        assert_chats(again.addr());
    }
}

// --------------------------------------------------------------- command line

#[test]
fn help_describes_the_caps() {
    assert_help_mentions(
        CHAT,
        &[
            "--max-queue",
            "--max-line",
            "--announce-limit",
            "--trace",
            "Ctrl-C",
            "SIGINT",
            "SIGTERM",
            "status 0",
        ],
    );
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for args in [
        &["--max-queue", "0"][..],
        &["--max-queue", "lots"][..],
        &["--max-line", "0"][..],
        &["--max-line", "-1"][..],
        &["--announce-limit", "many"][..],
        &["surplus"][..],
    ] {
        assert_refused(CHAT, args);
    }
}

#[test]
fn a_busy_port_is_one_line_not_a_panic() {
    let (first, _) = settled();
    let output = command(CHAT)
        .args(["--addr", &first.addr().to_string()])
        .assert()
        .code(1);
    let stderr = stderr(output.get_output());
    assert!(stderr.contains("the port is in use"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_chats(first.addr());
}
