//! Checkers for the book's exercises: each fails until its exercise is done.
//!
//! They are `#[ignore]`d, so `cargo test --workspace` passes on an unsolved
//! checkout. Run one by name:
//!
//! ```sh
//! cargo test -p tests --test exercises exercise_04_keep_alive -- --ignored
//! ```
//!
//! `.ci/exercises` runs each one on the unsolved sources (it must fail) and
//! after applying `exercises/NN_name/solution.patch` (it must pass).

use std::io::{ErrorKind, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use tests::client::PATIENCE;
use tests::{GET, RESPONSE, Server, connect, request, tcp_info};

/// Reads exactly one response's worth of bytes, or fails the test with what
/// the server did instead.
fn read_one_response(stream: &mut std::net::TcpStream, what: &str) {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut response = vec![0u8; RESPONSE.len()];
    match stream.read_exact(&mut response) {
        Ok(()) => assert_eq!(response, RESPONSE, "{what}: wrong bytes"),
        Err(err) => panic!("{what}: no complete response ({err}); is the connection kept open?"),
    }
}

/// Exercise 01: example01 answers with the URL it was asked for, as a
/// plain-text body with the right Content-Length.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_01_echo_url() {
    let server = Server::start("example01_blocking", &["--quiet"]);
    let response = request(server.addr(), b"GET /hello/world HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert_eq!(body, "/hello/world", "the body is not the URL");
    assert!(
        head.lines().any(|line| line == "Content-Length: 12"),
        "no Content-Length: 12 in\n{head}"
    );
}

/// Exercise 02: example02 gives up on a client that sends nothing, so the
/// next client is answered while the silent one is still connected.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_02_read_timeout() {
    let server = Server::start("example02_loop", &["--quiet"]);
    let silent = connect(server.addr());
    let mut other = connect(server.addr());
    other.write_all(GET).unwrap();
    // The exercise asks for a 2-second timeout; allow five times that.
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut response = Vec::new();
    let outcome = other.read_to_end(&mut response);
    drop(silent);
    match outcome {
        Ok(_) => assert_eq!(response, RESPONSE),
        Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("no answer within 10 s while a silent client was connected")
        }
        Err(err) => panic!("unexpected error: {err}"),
    }
}

/// Exercise 04a: example03 answers every request on a connection, one after
/// another and pipelined (two requests in one write).
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_04_keep_alive() {
    let server = Server::start("example03_epoll_level", &["--quiet"]);
    let mut client = connect(server.addr());
    for i in 0..3 {
        client.write_all(GET).unwrap();
        read_one_response(&mut client, &format!("request {i} on one connection"));
    }
    let mut two = GET.to_vec();
    two.extend_from_slice(GET);
    client.write_all(&two).unwrap();
    read_one_response(&mut client, "first of two pipelined requests");
    read_one_response(&mut client, "second of two pipelined requests");
    // Other clients are still served meanwhile.
    let mut other = connect(server.addr());
    other.write_all(GET).unwrap();
    read_one_response(&mut other, "another client");
}

/// The interest entries the server's epoll instance holds now.
fn interest_count(server: &Server) -> usize {
    tests::process::epoll_interest(server.pid()).len()
}

/// Exercise 04b: with `--max-connections 2` and two clients connected, a
/// third is closed unanswered; once one leaves, the next is served.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_04_connection_cap() {
    let server = Server::start(
        "example03_epoll_level",
        &["--quiet", "--max-connections", "2"],
    );
    let baseline = interest_count(&server);
    let first = connect(server.addr());
    let _second = connect(server.addr());
    assert!(
        tests::wait_until(PATIENCE, || interest_count(&server) == baseline + 2),
        "the server never registered two connections"
    );

    let mut third = connect(server.addr());
    let _ = third.write_all(GET);
    third.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut response = Vec::new();
    match third.read_to_end(&mut response) {
        Ok(_) => assert!(
            response.is_empty(),
            "the third client was answered: {:?}",
            String::from_utf8_lossy(&response)
        ),
        Err(err) if err.kind() == ErrorKind::ConnectionReset => {}
        Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("the third client was left waiting, not closed")
        }
        Err(err) => panic!("unexpected error: {err}"),
    }
    assert_eq!(interest_count(&server), baseline + 2, "cap exceeded");

    drop(first);
    assert!(
        tests::wait_until(PATIENCE, || interest_count(&server) == baseline + 1),
        "the server never noticed the first client leave"
    );
    assert_eq!(request(server.addr(), GET), RESPONSE);
}

const EPOLLONESHOT: u32 = 1 << 30;

/// Exercise 06: example04 registers connections with EPOLLONESHOT (the
/// kernel's record says so) and re-arms them, so it still answers a plain
/// request, a 6 KiB one read in several pieces, and 50 clients at once.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_06_oneshot() {
    let server = Server::start("example04_epoll_edge", &["--quiet"]);
    let (_silent, events) = server.silent_client_interest();
    assert_ne!(
        events & EPOLLONESHOT,
        0,
        "connection registered without EPOLLONESHOT: {events:#x}"
    );

    assert_eq!(request(server.addr(), GET), RESPONSE);
    // A request sent in two parts needs the entry re-armed after the first.
    let mut split = connect(server.addr());
    split.write_all(b"GET / HTTP/1.0\r\n").unwrap();
    thread::sleep(Duration::from_millis(100));
    split.write_all(b"X-Filler: ").unwrap();
    split.write_all(&[b'x'; 6000]).unwrap();
    split.write_all(b"\r\n\r\n").unwrap();
    read_one_response(&mut split, "a request sent in parts");

    let clients: Vec<_> = (0..50)
        .map(|_| {
            let addr = server.addr();
            thread::spawn(move || request(addr, GET))
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), RESPONSE);
    }
}

/// The names of the threads of process `pid` (from /proc/PID/task/*/comm).
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// Exercise 03: example07 names each connection's thread `conn-PORT`, after
/// the client's port, so `ps -L` and `top -H` show who is served.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_03_thread_names() {
    let server = Server::start("example07_threads", &["--quiet"]);
    let silent = connect(server.addr());
    let wanted = format!("conn-{}", silent.local_addr().unwrap().port());
    let found = tests::wait_until(PATIENCE, || thread_names(server.pid()).contains(&wanted));
    assert!(
        found,
        "no thread named {wanted}: {:?}",
        thread_names(server.pid())
    );
    drop(silent);
}

/// Exercise 09: with Nagle on (`--no-nodelay`) and no cork, example06 no
/// longer stalls on a kept-alive connection: requests after the first
/// take under 10 ms (a Nagle stall waits for a 40 ms delayed ACK).
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_09_one_write() {
    let server = Server::start(
        "example06_nodelay",
        &["--quiet", "--keep-alive", "--no-nodelay"],
    );
    let mut stream = connect(server.addr());
    let mut times = Vec::new();
    for round in 0..12 {
        let start = Instant::now();
        stream.write_all(GET).unwrap();
        read_one_response(&mut stream, "a kept-alive request");
        // The first exchange is acknowledged at once (quick ACK mode).
        if round > 0 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    assert!(
        median < Duration::from_millis(10),
        "requests on a kept-alive connection still stall: median {median:?}"
    );
}

/// Exercise 10: example09 `--tick-ms 50` watches a timerfd in its epoll
/// set and logs a tick at each expiry. Checked by what the program does, not
/// by what it calls things: the timerfd is found in /proc, the loop sleeps
/// between ticks (an expiry left unread keeps a level-triggered entry ready,
/// and the loop spins), and the ticks come every 50 ms, one wake-up each.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_10_timer() {
    const INTERVAL_MS: f64 = 50.0;
    const TICKS: usize = 20;
    let server = Server::start("example09_watch_fds", &["--quiet", "--tick-ms", "50"]);
    let pid = server.pid();
    // The timer is the fd whose target is the kernel's timerfd inode,
    // whatever the log names it; it must sit in the epoll set, for reading.
    let timer = tests::process::anon_inode_fds(pid, "[timerfd]")
        .first()
        .copied()
        .unwrap_or_else(|| {
            panic!(
                "no timerfd among the open fds: {:?}",
                tests::process::fd_targets(pid)
            )
        });
    let interest = tests::process::epoll_interest(pid);
    assert!(
        interest
            .iter()
            .any(|&(fd, mask)| fd == timer && mask & libc::EPOLLIN as u32 != 0),
        "the timerfd (fd {timer}) is not watched for EPOLLIN: {interest:?}"
    );
    // Notes about an fd are `...   fd 7: tick`; events are `... fd 7 NAME:
    // EPOLLIN` (see example09's `log` and `note`).
    let note = format!("   fd {timer}: ");
    let event = format!(" fd {timer} ");
    let ticks_of = |log: &str| -> Vec<u64> {
        log.lines()
            .filter(|line| line.contains(&note) && line.contains("tick"))
            .filter_map(time_of_day_ms)
            .collect()
    };
    let ticked = server.wait_for_stderr(PATIENCE, |log| !ticks_of(log).is_empty());
    assert!(
        ticked,
        "no tick logged for fd {timer}:\n{}",
        server.stderr()
    );

    // Between ticks the loop sleeps in epoll_wait.
    tests::process::assert_not_spinning(pid, "example09 with a timer");

    let enough = server.wait_for_stderr(PATIENCE, |log| ticks_of(log).len() >= TICKS);
    let log = server.stderr();
    let ticks = ticks_of(&log);
    assert!(
        enough,
        "{} ticks in {PATIENCE:?}, at one per 50 ms:\n{log}",
        ticks.len()
    );
    // The mean gap between ticks, from the log's own clock: a late wake-up
    // on a busy machine delays one tick, not the timer's schedule.
    let (first, last) = (ticks[0], ticks[ticks.len() - 1]);
    let span = (last + 86_400_000 - first) % 86_400_000;
    let mean = span as f64 / (ticks.len() - 1) as f64;
    assert!(
        (INTERVAL_MS / 2.0..=INTERVAL_MS * 3.0).contains(&mean),
        "{} ticks {mean:.1} ms apart on average, asked for one every 50 ms",
        ticks.len()
    );
    // One wake-up per tick: each event on the timer reads its count.
    let events = log
        .lines()
        .filter(|line| line.contains(&event) && !line.contains(&note))
        .count();
    assert!(
        events <= ticks.len() + 2,
        "{events} events on the timerfd for {} ticks: is the count read?",
        ticks.len()
    );
}

/// The time of day of an example09 log line (`2026-11-24 10:39:19.104Z ...`),
/// in milliseconds.
fn time_of_day_ms(line: &str) -> Option<u64> {
    let clock = line.split_whitespace().nth(1)?.strip_suffix('Z')?;
    let (hms, ms) = clock.split_once('.')?;
    let mut parts = hms.split(':').map(|part| part.parse::<u64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    Some(((h * 60 + m) * 60 + s) * 1000 + ms.parse::<u64>().ok()?)
}

/// Exercise 11: example10 serves a second server (`--also ADDR`, answering
/// `Hello, world!`) on the same loop, beside the URL echo.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_11_second_server() {
    let server = Server::start(
        "example10_event_loop",
        &["--quiet", "--also", "127.0.0.1:0"],
    );
    let mut second = None;
    let found = server.wait_for_stdout(PATIENCE, |out| {
        out.lines().any(|line| line.starts_with("listening on "))
    });
    assert!(found, "no second `listening on` line:\n{}", server.stdout());
    for line in server.stdout().lines() {
        if let Some(addr) = line.strip_prefix("listening on ") {
            second = addr.trim().parse::<std::net::SocketAddr>().ok();
        }
    }
    let second = second.expect("a second address");
    assert_ne!(second, server.addr());
    assert_eq!(request(second, GET), RESPONSE, "the second server");
    let echoed = request(server.addr(), b"GET /still-here HTTP/1.0\r\n\r\n");
    assert!(
        String::from_utf8_lossy(&echoed).ends_with("still-here"),
        "the echo server no longer echoes: {:?}",
        String::from_utf8_lossy(&echoed)
    );
    // One thread serves both.
    assert_eq!(tests::process::threads(server.pid()), 1);
}

/// Exercise 07: example04 `--accept-log` says how many connections each
/// listener event took from the accept queue. Clients that connect while
/// the server is stopped are queued by the kernel (their handshakes
/// complete without it), and come out in one event: five, then three.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_07_accept_log() {
    tests::command_line::assert_help_mentions("example04_epoll_edge", &["--accept-log"]);
    let server = Server::start("example04_epoll_edge", &["--quiet", "--accept-log"]);
    let mut held = Vec::new();
    for batch in [5, 3] {
        server.signal(libc::SIGSTOP);
        assert!(
            tests::wait_until(PATIENCE, || tests::process::state(server.pid()) == 'T'),
            "the server did not stop"
        );
        // connect(2) returns although nobody accepts: the kernel finished
        // the handshake and queued the connection.
        held.extend((0..batch).map(|_| connect(server.addr())));
        server.signal(libc::SIGCONT);
        let said = format!("accepted {batch}");
        assert!(
            server.wait_for_stderr(PATIENCE, |err| err
                .lines()
                .any(|line| line.ends_with(&said))),
            "no `{said}` line on stderr after {batch} clients queued:\n{}",
            server.stderr()
        );
    }
    for mut client in held {
        assert_eq!(tests::exchange(&mut client, GET).unwrap(), RESPONSE);
    }
}

/// Exercise 08: example05 `--keep-alive` keeps the cork in across two
/// pipelined requests, so both responses leave in one data segment (the
/// client's TCP_INFO counts them).
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_08_cork_pipeline() {
    let server = Server::start("example05_cork", &["--quiet", "--keep-alive"]);
    // Three connections, so one lucky or unlucky run cannot decide.
    for _ in 0..3 {
        let mut stream = connect(server.addr());
        let mut two = GET.to_vec();
        two.extend_from_slice(GET);
        stream.write_all(&two).unwrap();
        read_one_response(&mut stream, "first pipelined request");
        read_one_response(&mut stream, "second pipelined request");
        let segments = tcp_info(&stream).tcpi_data_segs_in;
        assert_eq!(segments, 1, "two responses took {segments} data segments");
    }
}

/// The (watched, ready) pairs of the `waited on N fds, M ready` lines.
fn wait_stats(stderr: &str) -> Vec<(usize, usize)> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.split_once("waited on ")?.1;
            let (watched, rest) = rest.split_once(" fds, ")?;
            let ready = rest.strip_suffix(" ready")?;
            Some((watched.parse().ok()?, ready.parse().ok()?))
        })
        .collect()
}

/// Exercise 05: example08 `--stats` reports each wait's size: with 20 idle
/// clients, a wait is handed 22 fds to find 1 ready (poll's O(n)).
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_05_wait_stats() {
    let server = Server::start(
        "example08_select_poll",
        &["--quiet", "--poller", "poll", "--stats"],
    );
    let idle: Vec<_> = (0..20).map(|_| connect(server.addr())).collect();
    // A line is printed when its wait returns. The wait that found the
    // 20th client watched 21 fds; the next one (22 fds) sleeps until the
    // request below.
    let all_accepted = server.wait_for_stderr(PATIENCE, |err| {
        wait_stats(err).iter().any(|&(watched, _)| watched >= 21)
    });
    assert!(
        all_accepted,
        "no wait on 21 fds (signalfd, listener, 19 clients):\n{}",
        server.stderr()
    );
    assert_eq!(request(server.addr(), GET), RESPONSE);
    let stats = wait_stats(&server.stderr());
    assert!(
        stats
            .iter()
            .any(|&(watched, ready)| watched >= 22 && ready == 1),
        "no wait that watched 22 or more fds and found 1 ready: {stats:?}"
    );
    drop(idle);
}

/// How long after `since` the server closed `stream` (a read of 0 bytes
/// or a reset), or a failure if it answered or had not closed within
/// PATIENCE.
fn closed_after(stream: &mut std::net::TcpStream, since: Instant, who: &str) -> Duration {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => assert!(
            answer.is_empty(),
            "{who} was answered: {:?}",
            String::from_utf8_lossy(&answer)
        ),
        Err(err) if err.kind() == ErrorKind::ConnectionReset => {}
        Err(err) => panic!("{who} was not closed: {err}"),
    }
    since.elapsed()
}

/// Exercise 12: example11 closes a connection that has sent nothing
/// within --first-byte-timeout, even when deadlines of the other length
/// come before it in the order of accepts, and holds one that has sent a
/// byte to its --request-timeout.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_12_first_byte_timeout() {
    tests::command_line::assert_help_mentions("example11_timeouts", &["--first-byte-timeout"]);
    let server = Server::start(
        "example11_timeouts",
        &[
            "--quiet",
            "--request-timeout",
            "4",
            "--first-byte-timeout",
            "1",
        ],
    );
    // X and Z each send a byte at once: the request timeout is theirs.
    let mut x = connect(server.addr());
    x.write_all(&GET[..1]).unwrap();
    let z_connected = Instant::now();
    let mut z = connect(server.addr());
    z.write_all(&GET[..1]).unwrap();
    // Y, accepted after them, sends nothing.
    let y_connected = Instant::now();
    let mut y = connect(server.addr());
    let y_closed = closed_after(&mut y, y_connected, "Y, silent");
    assert!(
        (Duration::from_secs(1)..Duration::from_millis(2500)).contains(&y_closed),
        "Y, silent, was closed {y_closed:?} after its connect, not 1 s (to 2.5 s)"
    );
    // X has sent a byte: it is still open, and its request, finished now,
    // in time, is answered.
    x.write_all(&GET[1..]).unwrap();
    read_one_response(&mut x, "X, which sent a byte at once");
    // Z never finishes: the request timeout closes it.
    let z_closed = closed_after(&mut z, z_connected, "Z, one byte sent");
    assert!(
        (Duration::from_secs(4)..Duration::from_millis(5500)).contains(&z_closed),
        "Z, one byte sent, was closed {z_closed:?} after its connect, not 4 s (to 5.5 s)"
    );
}

/// Exercise 13: example12 `--when-full drop` keeps a client that stopped
/// reading and drops its oldest lines instead, whole lines only, telling
/// it how many bytes it missed; the server's memory stays bounded all the
/// same.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_13_drop_oldest() {
    use tests::chat::{CHAT, Chatter, check_numbered, numbered_line, said, text};
    let server = Server::start(
        CHAT,
        &["--quiet", "--max-queue", "100000", "--when-full", "drop"],
    );
    let addr = server.addr();
    let peak_before = tests::process::peak_rss_kib(server.pid());
    let mut behind = Chatter::join(addr);
    let mut sender = Chatter::join(addr);
    let mut reader = Chatter::join(addr);
    // About 10 MB: more than the kernel's buffers (about 4 MB on loopback)
    // and the cap hold for `behind`, which does not read yet. `reader`
    // reads in a thread, so that only `behind` falls behind.
    let end = format!("{}: end\n", sender.name).into_bytes();
    let reading = {
        let end = end.clone();
        thread::spawn(move || reader.until_line(&end).len())
    };
    let lines: Vec<u8> = (0..9_000).flat_map(numbered_line).collect();
    sender.say(&lines);
    sender.say(b"end\n");
    reading.join().expect("the reader failed");
    let behind_addr = behind.stream.local_addr().unwrap();
    assert!(
        tests::process::socket_fd(server.pid(), addr, behind_addr).is_some(),
        "{} was disconnected: the server holds no socket for it",
        behind.name
    );
    let growth_kib = tests::process::peak_rss_kib(server.pid()).saturating_sub(peak_before);
    assert!(
        growth_kib < 8 * 1024,
        "the server's peak memory grew by {growth_kib} KiB"
    );

    // Now `behind` reads: whole lines, in order with gaps, a line that says
    // what was dropped, and the last line.
    let (mut last, mut drops) = (None, 0);
    for line in behind.until_line(&end) {
        match said(&line) {
            Some((_, payload)) => {
                let seq = check_numbered(payload).unwrap_or_else(|err| panic!("{err}"));
                assert!(
                    last.is_none_or(|last| seq > last),
                    "line {seq} after line {last:?}"
                );
                last = Some(seq);
            }
            None if line.windows(13).any(|w| w == b"bytes dropped") => drops += 1,
            None if line.ends_with(b" joined\n") => {}
            None => panic!("an unexpected line: {}", text(&line)),
        }
    }
    assert!(drops > 0, "no line said that lines were dropped");
}

/// Exercise 14: with `--balance exclusive`, the workers of an idle server
/// take turns: four workers share 40 clients that come one at a time,
/// where unsolved the first worker takes them all.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_14_take_turns() {
    const WORKERS: usize = 4;
    const CLIENTS: usize = 40;
    let workers = WORKERS.to_string();
    let mut server = Server::start(
        "example13_many_cores",
        &["--quiet", "--balance", "exclusive", "--workers", &workers],
    );
    tests::balance::one_at_a_time_to_idle_workers(server.pid(), server.addr(), GET, CLIENTS);
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(PATIENCE).is_some_and(|s| s.success()));
    assert!(server.wait_for_stderr(PATIENCE, |err| {
        tests::balance::worker_counts(err).len() == WORKERS
    }));
    let counts = tests::balance::worker_counts(&server.stderr());
    for worker in &counts {
        // A fair share is 10; round-robin gives exactly that.
        assert!(
            worker.accepted >= 5,
            "worker {} accepted {} of {CLIENTS}: {counts:?}",
            worker.worker,
            worker.accepted
        );
    }
}

/// Exercise 15: SIGUSR1 makes example14_mio print how many connections it
/// holds (`3 connections open`) on stderr, and go on serving: the signal
/// thread hands the request to the loop through a channel, and wakes it
/// with the Waker.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_15_report() {
    let mut server = Server::start("example14_mio", &["--quiet"]);
    let clients: Vec<_> = (0..3).map(|_| connect(server.addr())).collect();
    assert!(
        tests::wait_until(PATIENCE, || server.connections() == 3),
        "the server never held the three clients"
    );
    // Unsolved, SIGUSR1 ends the process: its default action.
    server.signal(libc::SIGUSR1);
    assert!(
        server.wait_for_stderr(PATIENCE, |err| err.contains("3 connections open")),
        "no `3 connections open` on stderr:\n{}",
        server.stderr()
    );
    // Again, once they have gone: the thread carries on after a report.
    drop(clients);
    assert!(
        tests::wait_until(PATIENCE, || server.connections() == 0),
        "the clients' connections were not closed"
    );
    server.signal(libc::SIGUSR1);
    assert!(
        server.wait_for_stderr(PATIENCE, |err| err.contains("0 connections open")),
        "no `0 connections open` on stderr:\n{}",
        server.stderr()
    );
    assert_eq!(request(server.addr(), GET), RESPONSE);
    // And SIGTERM still stops it cleanly.
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(PATIENCE).expect("SIGTERM stops it");
    assert_eq!(status.code(), Some(0), "{status}");
}

/// Exercise 16: example15_tokio `--request-timeout 1` closes a client that
/// has not completed its request a second after connecting, on both
/// runtimes, and still answers a client that completes it in time.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_16_request_timeout() {
    for runtime in ["current-thread", "multi-thread"] {
        let server = Server::start(
            "example15_tokio",
            &["--quiet", "--runtime", runtime, "--request-timeout", "1"],
        );
        let mut silent = connect(server.addr());
        let started = Instant::now();
        let mut answer = Vec::new();
        match silent.read_to_end(&mut answer) {
            Ok(_) => assert!(answer.is_empty(), "{runtime}: {answer:?}"),
            Err(err) if err.kind() == ErrorKind::ConnectionReset => {}
            Err(err) => panic!("{runtime}: the silent client was not closed: {err}"),
        }
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900),
            "{runtime}: closed after {waited:?}, before its second was up"
        );
        // Half a request, a pause well inside the limit, the rest.
        let mut slow = connect(server.addr());
        slow.write_all(&GET[..10]).unwrap();
        thread::sleep(Duration::from_millis(200));
        slow.write_all(&GET[10..]).unwrap();
        let mut response = Vec::new();
        slow.read_to_end(&mut response).unwrap();
        assert_eq!(response, RESPONSE, "{runtime}: the slow client");
    }
}

/// Exercise 17: example16_io_uring accepts its clients as direct
/// descriptors, slots of the ring's own table of files, instead of fds of
/// the process: 20 silent clients add no fd, each still has a recv waiting
/// in the kernel, and every client is answered, on both accept paths.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_17_direct_descriptors() {
    if !tests::uring::available_or_skip("exercise_17_direct_descriptors") {
        return;
    }
    const RECV: u32 = 27; // IORING_OP_RECV
    for accept in [&[][..], &["--no-multishot"]] {
        let accept = &[&["--quiet"], accept].concat();
        let mut server = Server::start("example16_io_uring", accept);
        let pid = server.pid();
        assert_eq!(request(server.addr(), GET), RESPONSE, "{accept:?}");
        let fds = server.fd_count();
        let silent: Vec<_> = (0..20).map(|_| connect(server.addr())).collect();
        let recvs = || {
            tests::process::uring_waiting(pid)
                .iter()
                .filter(|&&op| op == RECV)
                .count()
        };
        assert!(
            tests::wait_until(PATIENCE, || recvs() == 20),
            "{accept:?}: {} recvs wait for 20 silent clients",
            recvs()
        );
        assert_eq!(
            server.fd_count(),
            fds,
            "{accept:?}: 20 clients are 20 more fds: {:?}",
            tests::process::fd_targets(pid)
        );
        // Served meanwhile: a request, and a 6 KiB one (six recvs).
        assert_eq!(request(server.addr(), GET), RESPONSE, "{accept:?}");
        let mut long = b"GET / HTTP/1.0\r\nX-Filler: ".to_vec();
        long.resize(6 * 1024 - 4, b'x');
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(request(server.addr(), &long), RESPONSE, "{accept:?}");
        drop(silent);
        assert!(
            tests::wait_until(PATIENCE, || recvs() == 0),
            "{accept:?}: recvs still wait after the clients left"
        );
        assert_eq!(request(server.addr(), GET), RESPONSE, "{accept:?}");
        server.signal(libc::SIGTERM);
        let status = server.wait_exit(PATIENCE).expect("SIGTERM stops it");
        assert_eq!(status.code(), Some(0), "{accept:?}: {status}");
    }
}
