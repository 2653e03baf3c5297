//! Checkers for the book's exercises: each fails until its exercise is done.
//!
//! They are `#[ignore]`d, so `cargo test --workspace` passes on an unsolved
//! checkout. Run one by name:
//!
//! ```sh
//! cargo test -p tests --test exercises exercise_03_keep_alive -- --ignored
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

/// Exercise 03a: example03 answers every request on a connection, one after
/// another and pipelined (two requests in one write).
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_03_keep_alive() {
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

/// Exercise 03b: with `--max-connections 2` and two clients connected, a
/// third is closed unanswered; once one leaves, the next is served.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_03_connection_cap() {
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

/// Exercise 04: example04 registers connections with EPOLLONESHOT (the
/// kernel's record says so) and re-arms them, so it still answers a plain
/// request, a 6 KiB one read in several pieces, and 50 clients at once.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_04_oneshot() {
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

/// Exercise 07: example07 names each connection's thread `conn-PORT`, after
/// the client's port, so `ps -L` and `top -H` show who is served.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_07_thread_names() {
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

/// Exercise 06: with Nagle on (`--no-nodelay`) and no cork, example06 no
/// longer stalls on a kept-alive connection: requests after the first
/// take under 10 ms (a Nagle stall waits for a 40 ms delayed ACK).
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_06_one_write() {
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

/// Exercise 09: example09 watches a timerfd with `--tick-ms`, and logs a
/// tick at each expiry (reading the count, or it would spin).
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_09_timer() {
    let server = Server::start("example09_watch_fds", &["--quiet", "--tick-ms", "50"]);
    let ticked = server.wait_for_stderr(PATIENCE, |err| err.matches(": tick").count() >= 3);
    assert!(ticked, "fewer than 3 ticks logged:\n{}", server.stderr());
    // Each expiry is read: a tick per event, not a flood of events.
    let log = server.stderr();
    let events = log.matches("timerfd: EPOLLIN").count();
    let ticks = log.matches(": tick").count();
    assert!(
        events <= ticks + 1,
        "{events} timer events for {ticks} ticks: is the count read?"
    );
}

/// Exercise 10: example10 serves a second server (`--also ADDR`, answering
/// `Hello, world!`) on the same loop, beside the URL echo.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_10_second_server() {
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

/// Exercise 05: example05 `--keep-alive` keeps the cork in across two
/// pipelined requests, so both responses leave in one data segment (the
/// client's TCP_INFO counts them).
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_05_cork_pipeline() {
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

/// Exercise 08: example08 `--stats` reports each wait's size: with 20 idle
/// clients, a wait is handed 22 fds to find 1 ready (poll's O(n)).
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_08_wait_stats() {
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

/// Exercise 13: with `--balance exclusive`, the workers of an idle server
/// take turns: four workers share 40 clients that come one at a time,
/// where unsolved the first worker takes them all.
#[test]
#[ignore = "exercise checker: run with --ignored"]
fn exercise_13_take_turns() {
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
