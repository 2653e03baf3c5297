//! Under load, faults and bad input, every server keeps working, and leaves
//! nothing behind: after each test its fd count and its epoll interest list
//! (one entry per connection in its map) are back where they started.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use tests::client::PATIENCE;
use tests::process::{cpu_time, fd_count, status_field};
use tests::{GET, Holdings, RESPONSE, Server, connect, exchange, request, wait_until};

/// Every server that serves one client after another or all at once.
const ALL: &[&str] = &[
    "example02_loop",
    "example03_epoll_level",
    "example04_epoll_edge",
    "example05_cork",
    "example06_nodelay",
];

/// The servers that serve clients concurrently.
const CONCURRENT: &[&str] = tests::CONCURRENT_SERVERS;

/// Starts `name` quietly and answers one request, so that everything the
/// server opens for itself exists; returns what it holds then.
fn settled(name: &str, args: &[&str]) -> (Server, Holdings) {
    let mut all_args = vec!["--quiet"];
    all_args.extend_from_slice(args);
    let server = Server::start(name, &all_args);
    assert_eq!(request(server.addr(), GET), RESPONSE, "{name}");
    let baseline = server.idle_holdings();
    (server, baseline)
}

/// Waits until the server is back to `baseline`, then checks it still
/// answers.
fn assert_back(name: &str, server: &Server, baseline: Holdings) {
    server.assert_back_to(baseline);
    assert_eq!(
        request(server.addr(), GET),
        RESPONSE,
        "{name} after the test"
    );
}

// --------------------------------------------------------------- load

/// `clients` threads send `total` requests between them, one connection
/// per request; returns how many failed (error or wrong bytes).
fn hammer(addr: SocketAddr, clients: usize, total: usize) -> usize {
    let failures = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let failures = Arc::clone(&failures);
            thread::spawn(move || {
                for _ in 0..total / clients {
                    let ok = TcpStream::connect(addr)
                        .and_then(|mut stream| {
                            stream.set_read_timeout(Some(PATIENCE))?;
                            exchange(&mut stream, GET)
                        })
                        .is_ok_and(|response| response == RESPONSE);
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    failures.load(Ordering::Relaxed)
}

#[test]
fn ten_thousand_requests_from_100_clients_without_an_error() {
    for name in CONCURRENT {
        let (server, baseline) = settled(name, &[]);
        let failures = hammer(server.addr(), 100, 10_000);
        assert_eq!(failures, 0, "{name}: {failures} of 10000 requests failed");
        assert_back(name, &server, baseline);
    }
}

#[test]
fn ten_thousand_idle_connections_while_others_are_served() {
    const IDLE: usize = 10_000;
    // The idle clients' fds are ours, their accepted sockets the server's:
    // both processes need room for 10,000 more. The server inherits our
    // limit.
    if let Err(why) = tests::limits::raise_nofile(IDLE as u64 + 1_000) {
        eprintln!("SKIPPED ten_thousand_idle_connections: {why}");
        return;
    }
    for name in CONCURRENT {
        let (server, baseline) = settled(name, &[]);
        let idle: Vec<TcpStream> = (0..IDLE).map(|_| connect(server.addr())).collect();
        // connect() returns once the kernel has queued the connection;
        // wait until the server has really accepted them all.
        assert!(
            wait_until(PATIENCE, || fd_count(server.pid()) >= baseline.fds + IDLE),
            "{name} did not accept {IDLE} connections: holds {} fds",
            fd_count(server.pid())
        );
        for _ in 0..100 {
            assert_eq!(
                request(server.addr(), GET),
                RESPONSE,
                "{name} beside {IDLE} idle"
            );
        }
        drop(idle);
        assert_back(name, &server, baseline);
    }
}

// --------------------------------------------------------------- faults

#[test]
fn clients_that_close_right_after_sending() {
    // The client closes its socket as soon as its request is out, so the
    // server's answer meets a closed socket: the client's kernel answers
    // it with RST, and the server's next write fails with EPIPE or
    // ECONNRESET. Rust ignores SIGPIPE, so that is an error, not a death.
    for name in ALL {
        let (server, baseline) = settled(name, &[]);
        for _ in 0..200 {
            connect(server.addr()).write_all(GET).unwrap();
        }
        assert_back(name, &server, baseline);
    }
}

#[test]
fn clients_that_reset_mid_response() {
    for name in ALL {
        let (server, baseline) = settled(name, &[]);
        for _ in 0..100 {
            let mut stream = connect(server.addr());
            stream.write_all(GET).unwrap();
            let mut start = [0u8; 10];
            stream.read_exact(&mut start).unwrap();
            tests::client::reset(stream);
        }
        assert_back(name, &server, baseline);
    }
}

#[test]
fn a_slow_reader_does_not_hold_up_others() {
    // The slow client asks and then reads nothing until 20 others have been
    // served, and then takes its answer a byte at a time.
    for name in ALL {
        let (server, baseline) = settled(name, &[]);
        let mut slow = connect(server.addr());
        slow.write_all(GET).unwrap();
        for _ in 0..20 {
            assert_eq!(request(server.addr(), GET), RESPONSE, "{name}");
        }
        let mut response = Vec::new();
        let mut byte = [0u8; 1];
        while slow.read(&mut byte).unwrap() == 1 {
            response.push(byte[0]);
            assert!(response.len() <= RESPONSE.len(), "{name}: too many bytes");
        }
        assert_eq!(response, RESPONSE, "{name}");
        drop(slow);
        assert_back(name, &server, baseline);
    }
}

// --------------------------------------------------------------- bad input

#[test]
fn requests_without_an_end_keep_memory_bounded() {
    // 50 clients at once each send up to 1 MiB that never ends a request.
    // A server that kept it all would grow by 50 MiB; the cap is 32 KiB a
    // connection. VmHWM is the peak resident memory the kernel has seen.
    const CLIENTS: usize = 50;
    for name in ALL {
        let (server, baseline) = settled(name, &[]);
        let peak_before = status_field(server.pid(), "VmHWM");
        let addr = server.addr();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                thread::spawn(move || {
                    let mut stream = connect(addr);
                    // The server answers 431 and closes partway: the rest
                    // of the writes then fail, as they should.
                    let _ = stream.write_all(&vec![b'x'; 1 << 20]);
                    let mut answer = Vec::new();
                    let _ = stream.read_to_end(&mut answer);
                    answer
                })
            })
            .collect();
        for client in clients {
            let answer = client.join().unwrap();
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.0 431 "),
                "{name}: {:?}",
                String::from_utf8_lossy(&answer)
            );
        }
        let growth_kib = status_field(server.pid(), "VmHWM").saturating_sub(peak_before);
        assert!(
            growth_kib < 16 * 1024,
            "{name}: peak memory grew by {growth_kib} KiB"
        );
        assert_back(name, &server, baseline);
    }
}

// --------------------------------------------------------------- exhaustion

#[test]
fn out_of_file_descriptors_neither_kills_nor_spins() {
    // With RLIMIT_NOFILE at 64, 100 silent clients exhaust the server's
    // fds: accept(2) fails with EMFILE while more clients wait in the
    // queue. The server must not die, and must not retry in a busy loop.
    for name in ALL {
        let (mut server, baseline) = tests_with_limit(name, 64);
        let silent: Vec<TcpStream> = (0..100).map(|_| connect(server.addr())).collect();
        if *name != "example02_loop" {
            // The epoll servers take connections until the limit.
            assert!(
                wait_until(PATIENCE, || fd_count(server.pid()) >= 60),
                "{name} holds only {} fds",
                fd_count(server.pid())
            );
        }
        // A second of being stuck: a busy loop would burn most of it.
        let before = cpu_time(server.pid());
        thread::sleep(Duration::from_secs(1));
        let used = cpu_time(server.pid()) - before;
        assert!(
            used < Duration::from_millis(300),
            "{name} used {used:?} of CPU in 1 s"
        );
        assert!(server.wait_exit(Duration::ZERO).is_none(), "{name} died");
        drop(silent);
        assert_back(name, &server, baseline);
    }
}

/// Like `settled`, with the server's open files limited to `max`.
fn tests_with_limit(name: &str, max: u64) -> (Server, Holdings) {
    let server = Server::start_with(name, &["--quiet"], |command| {
        tests::limits::limit_nofile(command, max)
    });
    assert_eq!(request(server.addr(), GET), RESPONSE, "{name}");
    let baseline = server.idle_holdings();
    (server, baseline)
}

// --------------------------------------------------------------- signals

/// The process state letter from /proc/PID/stat (`S` sleeping, `T`
/// stopped, ...).
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

#[test]
fn stopped_and_continued_servers_carry_on() {
    // signal(7): after SIGSTOP and SIGCONT, Linux makes epoll_wait(2) fail
    // with EINTR even though no handler ran. nix reports that as an error;
    // a server that treated it as fatal would exit here.
    for name in ALL {
        let (mut server, baseline) = settled(name, &[]);
        server.signal(libc::SIGSTOP);
        assert!(
            wait_until(PATIENCE, || state(server.pid()) == 'T'),
            "{name} did not stop"
        );
        server.signal(libc::SIGCONT);
        assert!(
            wait_until(PATIENCE, || state(server.pid()) != 'T'),
            "{name} did not go on"
        );
        assert_eq!(
            request(server.addr(), GET),
            RESPONSE,
            "{name} after SIGCONT"
        );
        assert!(server.wait_exit(Duration::ZERO).is_none(), "{name} exited");
        assert_back(name, &server, baseline);
    }
}
