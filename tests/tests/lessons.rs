//! The lesson of each step, as a test that would fail if the lesson were
//! false.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use tests::client::PATIENCE;
use tests::{CONCURRENT_SERVERS, GET, RESPONSE, Server, connect, request, tcp_info};

// ---------------------------------------------------------------------------
// Step 2 -> 3: a silent client stalls a blocking server, not an epoll one.

/// Connects a client that says nothing, then asks for a page on a second
/// connection. Returns whether the page came while the first client was
/// still connected (within `wait`).
fn answered_beside_a_silent_client(server: &Server, wait: Duration) -> bool {
    let silent = connect(server.addr());
    let mut other = connect(server.addr());
    other.write_all(GET).unwrap();
    other.set_read_timeout(Some(wait)).unwrap();
    let mut response = Vec::new();
    let outcome = other.read_to_end(&mut response);
    drop(silent);
    match outcome {
        Ok(_) => {
            assert_eq!(response, RESPONSE);
            true
        }
        Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(err) => panic!("unexpected error: {err}"),
    }
}

/// The problem epoll solves: example 2, blocked reading a client that
/// says nothing, answers no one else.
#[test]
fn a_silent_client_stalls_the_blocking_loop() {
    let server = Server::start("example02_loop", &["--quiet"]);
    // Two seconds of nothing is a stall: the server answers in microseconds.
    assert!(
        !answered_beside_a_silent_client(&server, Duration::from_secs(2)),
        "example02 answered while it should be stuck reading the silent client"
    );
    // Once the silent client has gone, the server is free again.
    assert_eq!(request(server.addr(), GET), RESPONSE);
}

/// The lesson of step 3: the epoll servers answer beside a silent client.
#[test]
fn a_silent_client_does_not_stall_the_epoll_servers() {
    for name in CONCURRENT_SERVERS {
        let server = Server::start(name, &["--quiet"]);
        assert!(
            answered_beside_a_silent_client(&server, PATIENCE),
            "{name} did not answer while a silent client was connected"
        );
    }
}

// ---------------------------------------------------------------------------
// Step 3 -> 4: level-triggered epoll repeats itself, edge-triggered does not.

/// Sends one 6 KiB request in a single write to a `--trace` server and
/// returns how many EPOLLIN events its connection got, and in how many
/// segments carrying data the request left (TCP_INFO's tcpi_data_segs_out
/// on our side).
fn read_events_for_six_kib(name: &str) -> (usize, u32) {
    let server = Server::start(name, &["--quiet", "--trace"]);
    let mut request = b"GET / HTTP/1.0\r\nX-Filler: ".to_vec();
    request.resize(6 * 1024 - 4, b'x');
    request.extend_from_slice(b"\r\n\r\n");
    let mut stream = connect(server.addr());
    assert_eq!(tests::exchange(&mut stream, &request).unwrap(), RESPONSE);
    let segments = tcp_info(&stream).tcpi_data_segs_out;

    // The connection's fd is the one that got EPOLLOUT. Its EPOLLIN lines
    // were written before that one, and the trace is written in order.
    assert!(server.wait_for_stderr(PATIENCE, |trace| trace.contains("EPOLLOUT")));
    let trace = server.stderr();
    let connection = trace
        .lines()
        .find(|line| line.contains("EPOLLOUT"))
        .and_then(|line| line.split(':').next())
        .unwrap()
        .to_owned();
    let events = trace
        .lines()
        .filter(|line| line.starts_with(&format!("{connection}:")) && line.contains("EPOLLIN"))
        .count();
    (events, segments)
}

/// Level-triggered epoll reports a socket again after every partial read:
/// at least six EPOLLIN for 6 KiB read 1 KiB at a time.
#[test]
fn level_triggered_reports_unread_bytes_again_and_again() {
    // The server reads 1024 bytes per event, as the tutorial does: 6 KiB
    // take at least 6 reads, and each one is its own EPOLLIN, because the
    // bytes left unread keep the socket readable.
    let (events, _) = read_events_for_six_kib("example03_epoll_level");
    assert!(
        events >= 6,
        "only {events} EPOLLIN events for 6 KiB read 1 KiB at a time"
    );
}

/// Edge-triggered epoll reports new bytes once: one EPOLLIN for a request
/// that arrives in one segment, read to EAGAIN.
#[test]
fn edge_triggered_reports_new_bytes_once() {
    // epoll(7): an edge-triggered event comes when bytes arrive, one per
    // arrival ("multiple events can be generated upon receipt of multiple
    // chunks of data"), not again for bytes left unread. On loopback
    // (MTU 65536) the 6 KiB written at once leave in one segment, so one
    // EPOLLIN (200 of 200 runs, idle and under load). Were they ever split,
    // the count of segments, read from our own TCP_INFO, says so.
    let (events, segments) = read_events_for_six_kib("example04_epoll_edge");
    assert_eq!(segments, 1, "the request left in {segments} segments");
    assert_eq!(events, 1, "{events} EPOLLIN events for one 6 KiB segment");
}

/// The kernel's view of one connection's interest entry (from
/// /proc/PID/fdinfo) while a silent client holds it open.
fn connection_interest(name: &str) -> u32 {
    let server = Server::start(name, &["--quiet"]);
    server.silent_client_interest().1
}

const EPOLLET: u32 = 1 << 31;

/// The kernel's own record of each interest entry (/proc/PID/fdinfo) has
/// EPOLLET for example 4's connections, and not for example 3's.
#[test]
fn the_kernel_holds_edge_triggered_interest_only_for_example04() {
    let level = connection_interest("example03_epoll_level");
    let edge = connection_interest("example04_epoll_edge");
    assert_eq!(
        level & EPOLLET,
        0,
        "example03 registered EPOLLET: {level:#x}"
    );
    assert_ne!(
        edge & EPOLLET,
        0,
        "example04 did not register EPOLLET: {edge:#x}"
    );
}

// ---------------------------------------------------------------------------
// Step 5: TCP_CORK turns two sends into one segment.

/// How many segments carrying data the client received for one response
/// (TCP_INFO's tcpi_data_segs_in: the kernel's own count).
fn data_segments_per_response(server: &Server) -> u32 {
    let mut stream = connect(server.addr());
    stream.write_all(GET).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    assert_eq!(response, RESPONSE);
    tcp_info(&stream).tcpi_data_segs_in
}

/// TCP_CORK makes headers and body, written in two sends, one segment;
/// without it they are two (TCP_INFO's count at the client).
#[test]
fn cork_sends_headers_and_body_in_one_segment() {
    let corked = Server::start("example05_cork", &["--quiet"]);
    let uncorked = Server::start("example05_cork", &["--quiet", "--no-cork"]);
    // Five times each, so one lucky or unlucky run cannot decide.
    for _ in 0..5 {
        assert_eq!(data_segments_per_response(&corked), 1, "corked");
        assert_eq!(data_segments_per_response(&uncorked), 2, "uncorked");
    }
}

// ---------------------------------------------------------------------------
// Step 6: Nagle's algorithm stalls kept-alive connections; TCP_NODELAY (or
// TCP_CORK) removes the stall. With one response per connection there is
// none to remove.

/// Median time of requests 2 to 12 on one kept-alive connection.
fn keep_alive_median(server: &Server) -> Duration {
    let mut stream = connect(server.addr());
    let mut times = Vec::new();
    for round in 0..12 {
        let start = Instant::now();
        stream.write_all(GET).unwrap();
        let mut response = vec![0; RESPONSE.len()];
        stream.read_exact(&mut response).unwrap();
        assert_eq!(response, RESPONSE);
        // The first exchange is special: a new connection acknowledges
        // at once ("quick ACK" mode), so only later requests show Nagle.
        if round > 0 {
            times.push(start.elapsed());
        }
    }
    median(times)
}

/// Median time of 11 requests, each on its own connection.
fn one_per_connection_median(server: &Server) -> Duration {
    let times = (0..11)
        .map(|_| {
            let start = Instant::now();
            assert_eq!(request(server.addr(), GET), RESPONSE);
            start.elapsed()
        })
        .collect();
    median(times)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The delayed ACK Nagle waits for is 40 ms on Linux; a stall is anything
/// over 20 ms, a quick answer anything under 10 ms (it takes well under
/// 1 ms on an idle machine: the margin is for a loaded one).
const STALL: Duration = Duration::from_millis(20);
const QUICK: Duration = Duration::from_millis(10);

/// With Nagle on, each kept-alive request after the first stalls for the
/// delayed ACK; TCP_NODELAY removes the stall.
#[test]
fn nagle_stalls_keep_alive_and_nodelay_removes_it() {
    let nagle = Server::start(
        "example06_nodelay",
        &["--quiet", "--keep-alive", "--no-nodelay"],
    );
    let nodelay = Server::start("example06_nodelay", &["--quiet", "--keep-alive"]);
    let (with_nagle, without) = (keep_alive_median(&nagle), keep_alive_median(&nodelay));
    assert!(with_nagle > STALL, "no Nagle stall: median {with_nagle:?}");
    assert!(
        without < QUICK,
        "TCP_NODELAY still slow: median {without:?}"
    );
}

/// TCP_CORK, pulled out after each response, removes the same stall.
#[test]
fn cork_also_removes_the_keep_alive_stall() {
    // Pulling the cork out sends what it held at once, Nagle or not.
    let uncorked = Server::start("example05_cork", &["--quiet", "--keep-alive", "--no-cork"]);
    let corked = Server::start("example05_cork", &["--quiet", "--keep-alive"]);
    let (stalled, quick) = (keep_alive_median(&uncorked), keep_alive_median(&corked));
    assert!(
        stalled > STALL,
        "no Nagle stall without the cork: median {stalled:?}"
    );
    assert!(
        quick < QUICK,
        "corked keep-alive still slow: median {quick:?}"
    );
}

/// With the tutorial's one response per connection, Nagle costs nothing:
/// no stall, with or without TCP_NODELAY.
#[test]
fn with_one_response_per_connection_nagle_costs_nothing() {
    // The tutorial's form: the server closes after each response, and the
    // close pushes the held body out with the FIN. Neither server stalls.
    for args in [&["--quiet", "--no-nodelay"][..], &["--quiet"][..]] {
        let server = Server::start("example06_nodelay", args);
        let time = one_per_connection_median(&server);
        assert!(time < QUICK, "{args:?}: median {time:?} per request");
    }
}

/// TCP_NODELAY set on the listening socket is on in every accepted one
/// (and off when the listener has it off).
#[test]
fn accepted_sockets_inherit_nodelay_from_the_listener() {
    // The server sets TCP_NODELAY on the listening socket only; --trace
    // reads the option back from each accepted socket.
    for (args, expected) in [
        (&["--quiet", "--trace"][..], "TCP_NODELAY on"),
        (
            &["--quiet", "--trace", "--no-nodelay"][..],
            "TCP_NODELAY off",
        ),
    ] {
        let server = Server::start("example06_nodelay", args);
        assert_eq!(request(server.addr(), GET), RESPONSE);
        assert!(
            server.wait_for_stderr(PATIENCE, |trace| trace.contains("accepted,")),
            "no accept traced"
        );
        assert!(
            server.stderr().contains(expected),
            "{args:?}: {}",
            server.stderr()
        );
    }
}

// ---------------------------------------------------------------------------
// The listen backlog: a full accept queue drops new clients' SYNs, and they
// wait for the retransmission timer.

/// Starts a connection without waiting for it: a non-blocking connect(2)
/// sends the SYN and returns EINPROGRESS.
fn start_connecting(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_nonblocking(true).unwrap();
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(err) => panic!("connect to {addr}: {err}"),
    }
    socket.into()
}

/// Whether the handshake of `stream` completes within `wait`, by the
/// client's own TCP state in TCP_INFO.
fn established_within(stream: &std::net::TcpStream, wait: Duration) -> bool {
    // TCP_ESTABLISHED in the kernel's enum of states (include/net/tcp_states.h).
    const ESTABLISHED: u8 = 1;
    tests::wait_until(wait, || tcp_info(stream).tcpi_state == ESTABLISHED)
}

/// A server that accepts nothing (stopped with SIGSTOP) and three clients
/// that connect one after another. Returns, per client, whether it got
/// through the handshake within a second, and its SYN retransmissions
/// (TCP_INFO's `tcpi_total_retrans`) once it finally did.
fn three_clients_at_a_stopped_server(backlog: &str) -> Vec<(bool, u32)> {
    let server = Server::start("example04_epoll_edge", &["--quiet", "--backlog", backlog]);
    server.signal(libc::SIGSTOP);
    assert!(
        tests::wait_until(PATIENCE, || tests::process::state(server.pid()) == 'T'),
        "the server did not stop"
    );
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let client = start_connecting(server.addr());
            // A second is the SYN's first retransmission timeout (RFC
            // 6298's initial RTO): a client past it has lost its SYN.
            let quick = established_within(&client, Duration::from_secs(1));
            (client, quick)
        })
        .collect();
    // Let the server go: it accepts its queue, and the kernel takes the
    // next retransmitted SYN.
    server.signal(libc::SIGCONT);
    clients
        .into_iter()
        .map(|(client, quick)| {
            assert!(established_within(&client, PATIENCE), "never connected");
            let retransmits = tcp_info(&client).tcpi_total_retrans;
            client.set_nonblocking(false).unwrap();
            client.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut client = client;
            assert_eq!(tests::exchange(&mut client, GET).unwrap(), RESPONSE);
            (quick, retransmits)
        })
        .collect()
}

/// The tutorial's `listen(1)`: with the server not accepting, a third
/// client's SYN is dropped and must be sent again; a backlog of 1024
/// queues all three at once.
#[test]
fn a_backlog_of_one_makes_the_third_client_wait_for_a_syn_retransmit() {
    // listen(2): the backlog caps the queue of connections that finished
    // their handshake and wait for accept(2). Linux queues backlog + 1, and
    // drops the SYN of a client that finds the queue full (the
    // ListenOverflows counter); the client sends it again 1 s later (on
    // recent kernels 1 s apart for the first five times, then 2 s, 4 s...:
    // net.ipv4.tcp_syn_linear_timeouts). That is the tutorial's `listen(1)`
    // under a burst.
    let outcome = three_clients_at_a_stopped_server("1");
    let [first, second, (third_quick, third_retransmits)] = outcome[..] else {
        panic!("three clients: {outcome:?}");
    };
    assert_eq!(
        [first, second],
        [(true, 0); 2],
        "backlog 1: the first two are queued at once (connected within 1 s, SYN retransmits)"
    );
    // How many times the third client sent its SYN again is a race, not
    // pinned: the server is continued just as the client's first
    // retransmission (1 s after its SYN) is due. If the server empties its
    // queue first, one; if not, that SYN is dropped too and the next, 3 s
    // after the first, gets in: two. (12 of 12 runs gave 1 on an idle
    // machine; 7 gave 1 and 5 gave 2 beside three busy loops.)
    assert!(
        !third_quick && third_retransmits >= 1,
        "backlog 1: the third client connected within 1 s ({third_quick}) \
         after {third_retransmits} SYN retransmits; its SYN should have been dropped"
    );
    // With the default backlog all three are queued at once.
    let outcome = three_clients_at_a_stopped_server("1024");
    assert_eq!(outcome, [(true, 0); 3], "backlog 1024");
}
