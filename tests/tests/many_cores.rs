//! Example 13's lessons: how new connections reach worker threads, each
//! with its own epoll instance, read from the counts the server prints
//! when it stops (`worker W: accepted A, wakeups K, empty E`, where the
//! wakeups are the kernel's count of the worker's sleeps that ended) and
//! from the kernel's tables.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tests::balance::{
    WorkerCounts, blocking_accept_order, one_at_a_time_to_idle_workers, worker_counts,
};
use tests::client::PATIENCE;
use tests::limits::limit_address_space;
use tests::process::{accept_queues, state, tcp_ext};
use tests::{GET, RESPONSE, Server, connect, request, wait_until};

const BINARY: &str = "example13_many_cores";

/// Stops `server` with SIGTERM, checks it exits with status 0, and returns
/// its worker lines.
fn stop(server: &mut Server, workers: usize) -> Vec<WorkerCounts> {
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(PATIENCE).expect("the server stops");
    assert!(status.success(), "{status}");
    assert!(
        server.wait_for_stderr(PATIENCE, |err| worker_counts(err).len() == workers),
        "not {workers} worker lines in:\n{}",
        server.stderr()
    );
    worker_counts(&server.stderr())
}

/// `connections` clients, one after another, each to a server whose
/// workers are all idle; then the worker lines.
fn counts_after_clients_to_idle_workers(
    args: &[&str],
    workers: usize,
    connections: usize,
) -> Vec<WorkerCounts> {
    let workers_arg = workers.to_string();
    let args = [&["--quiet", "--workers", &workers_arg], args].concat();
    let mut server = Server::start(BINARY, &args);
    one_at_a_time_to_idle_workers(server.pid(), server.addr(), GET, connections);
    let counts = stop(&mut server, workers);
    let accepted: u64 = counts.iter().map(|c| c.accepted).sum();
    assert_eq!(accepted, connections as u64, "{counts:?}");
    counts
}

/// Empty wakeups per connection.
fn empty_per_connection(counts: &[WorkerCounts]) -> f64 {
    let empty: u64 = counts.iter().map(|c| c.empty).sum();
    let accepted: u64 = counts.iter().map(|c| c.accepted).sum();
    empty as f64 / accepted as f64
}

const WORKERS: usize = 8;
const CONNECTIONS: usize = 100;

// ---------------------------------------------------------------------------
// The thundering herd, and the two ways out of it.

/// One listening socket in eight workers' epoll instances: each new
/// connection wakes every idle worker, one accepts it, and the other seven
/// were woken for nothing. (Most of them never see an event: epoll_wait
/// checks the socket again before it returns, finds the queue empty, and
/// sleeps again. The kernel counts the wakeup all the same.)
#[test]
fn a_shared_listener_wakes_every_idle_worker_for_each_connection() {
    let counts =
        counts_after_clients_to_idle_workers(&["--balance", "shared"], WORKERS, CONNECTIONS);
    let empty = empty_per_connection(&counts);
    assert!(
        empty >= 4.0,
        "{empty:.2} empty wakeups per connection, expected about {}: {counts:?}",
        WORKERS - 1
    );
}

/// The same listening socket registered with EPOLLEXCLUSIVE: the kernel
/// wakes one idle worker per connection, so almost no wakeup is wasted.
#[test]
fn epollexclusive_wakes_one_idle_worker_per_connection() {
    let counts =
        counts_after_clients_to_idle_workers(&["--balance", "exclusive"], WORKERS, CONNECTIONS);
    let empty = empty_per_connection(&counts);
    assert!(
        empty <= 0.5,
        "{empty:.2} empty wakeups per connection: {counts:?}"
    );
}

/// A listener per worker (SO_REUSEPORT): a connection is queued at one
/// worker's socket, and only that worker is woken. Nothing is wasted.
#[test]
fn reuseport_wakes_only_the_worker_whose_queue_has_the_connection() {
    let counts = counts_after_clients_to_idle_workers(&[], WORKERS, CONNECTIONS);
    let empty: u64 = counts.iter().map(|c| c.empty).sum();
    assert_eq!(empty, 0, "{counts:?}");
}

// ---------------------------------------------------------------------------
// Who gets the connections.

/// SO_REUSEPORT picks a listener by a hash of the connection's addresses
/// and ports: clients from many source ports spread over all the workers,
/// busy or idle.
#[test]
fn reuseport_spreads_clients_from_many_ports_over_every_worker() {
    const CLIENTS: u64 = 400;
    let workers = WORKERS.to_string();
    let mut server = Server::start(BINARY, &["--quiet", "--workers", &workers]);
    for _ in 0..CLIENTS {
        // A new connection, so a new ephemeral port each time.
        assert_eq!(request(server.addr(), GET), RESPONSE);
    }
    let counts = stop(&mut server, WORKERS);
    let fair = CLIENTS / WORKERS as u64;
    for worker in &counts {
        assert!(
            worker.accepted >= fair * 2 / 5,
            "worker {} accepted {} of {CLIENTS}, a fair share is {fair}: {counts:?}",
            worker.worker,
            worker.accepted
        );
    }
}

/// Threads that block in accept(2) on one listening socket wait in its
/// queue in turn, first come first served: connections go round them,
/// always in the same order.
#[test]
fn blocking_accept_hands_connections_round_the_threads() {
    const THREADS: usize = 4;
    let order = blocking_accept_order(THREADS, 10 * THREADS);
    let mut first: Vec<usize> = order[..THREADS].to_vec();
    first.sort_unstable();
    assert_eq!(first, (0..THREADS).collect::<Vec<_>>(), "{order:?}");
    for (i, thread) in order.iter().enumerate().skip(THREADS) {
        assert_eq!(*thread, order[i - THREADS], "not in turn: {order:?}");
    }
}

/// EPOLLEXCLUSIVE with idle workers: the kernel offers each connection to
/// the workers' epoll instances in the order they were registered on the
/// listening socket, and the first that has a thread waiting takes it.
/// When all are idle that is always the first worker: it takes nearly
/// every connection while the others sleep (Cloudflare's "one worker takes
/// all the load").
#[test]
fn epollexclusive_gives_an_idle_servers_connections_to_its_first_worker() {
    let counts =
        counts_after_clients_to_idle_workers(&["--balance", "exclusive"], WORKERS, CONNECTIONS);
    assert!(
        counts[0].accepted >= CONNECTIONS as u64 * 9 / 10,
        "worker 0 accepted {} of {CONNECTIONS}: {counts:?}",
        counts[0].accepted
    );
}

/// A worker thread that cannot start (here: no address space left for its
/// stack, under RLIMIT_AS) is an error, not a panic: the workers already
/// running stop as they do on Ctrl-C, and the server exits with status 1
/// and says why, instead of waiting for them for ever.
#[test]
fn a_worker_that_cannot_start_stops_the_server_with_a_message() {
    // 300 workers' stacks (2 MiB each) do not fit in 256 MiB.
    let args = ["--quiet", "--balance", "shared", "--workers", "300"];
    let mut server = Server::start_with(BINARY, &args, |command| {
        limit_address_space(command, 256 << 20)
    });
    let status = server.wait_exit(PATIENCE).unwrap_or_else(|| {
        panic!(
            "the server still runs {PATIENCE:?} after a worker failed to start:\n{}",
            server.stderr()
        )
    });
    assert_eq!(status.code(), Some(1), "{status}\n{}", server.stderr());
    assert!(
        server.wait_for_stderr(PATIENCE, |err| err.contains("cannot start a worker thread")),
        "{}",
        server.stderr()
    );
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

// ---------------------------------------------------------------------------
// Closing at once, without example 4's shutdown.

/// Sends a request followed by 4000 bytes the server never reads (a body
/// it ignores), then reads to the end: the response, and how the stream
/// ended.
fn answer_to_more_than_a_request(server: &Server) -> (Vec<u8>, std::io::Result<usize>) {
    let mut stream = connect(server.addr());
    let mut bytes = GET.to_vec();
    bytes.extend_from_slice(&[b'x'; 4000]);
    stream.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return (answer, Ok(0)),
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(err) => return (answer, Err(err)),
        }
    }
}

/// close(2) with bytes still unread in the receive buffer sends a reset,
/// not a FIN. Example 4 shuts its side down first (FIN after the
/// response), so its client reads the response and then the end of the
/// stream; example 13 closes at once, so a client that sent more than the
/// server read gets the response followed by ECONNRESET. That is what the
/// saved system calls cost: a client that reads to the end of the stream
/// sees an error after a complete answer.
#[test]
fn closing_at_once_resets_a_client_that_sent_more_than_was_read() {
    let example04 = Server::start("example04_epoll_edge", &["--quiet"]);
    let (answer, end) = answer_to_more_than_a_request(&example04);
    assert_eq!(answer, RESPONSE);
    assert_eq!(end.unwrap(), 0, "example04: not an orderly end");

    let example13 = Server::start(BINARY, &["--quiet", "--workers", "1"]);
    let (answer, end) = answer_to_more_than_a_request(&example13);
    assert_eq!(
        answer, RESPONSE,
        "the response arrives whole before the reset"
    );
    let err = end.expect_err("example13: an orderly end, not a reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

// ---------------------------------------------------------------------------
// TCP_DEFER_ACCEPT.

/// With TCP_DEFER_ACCEPT (on by default, 1 s) the kernel keeps a new
/// connection until its first bytes arrive: a silent client is not
/// accepted, costs the server no file descriptor and no wakeup, until it
/// speaks, or until the timeout. With `--defer-accept 0` it is accepted at
/// once.
#[test]
fn defer_accept_keeps_a_silent_client_out_until_it_speaks() {
    let server = Server::start(BINARY, &["--quiet", "--workers", "1"]);
    let mut silent = connect(server.addr());
    // Half a second of silence: not accepted (the timeout is 1 s).
    assert!(
        !wait_until(Duration::from_millis(500), || server.connections() > 0),
        "a silent client was accepted at once"
    );
    silent.write_all(b"GET").unwrap();
    assert!(
        wait_until(PATIENCE, || server.connections() == 1),
        "the client's first bytes did not get it accepted"
    );
    // One that never speaks is let in after the timeout.
    let _silent_for_good = connect(server.addr());
    assert!(
        wait_until(PATIENCE, || server.connections() == 2),
        "a silent client was never accepted"
    );

    let server = Server::start(
        BINARY,
        &["--quiet", "--workers", "1", "--defer-accept", "0"],
    );
    let _silent = connect(server.addr());
    assert!(
        wait_until(PATIENCE, || server.connections() == 1),
        "--defer-accept 0 did not accept a silent client"
    );
}

// ---------------------------------------------------------------------------
// Closing one listener of a SO_REUSEPORT group.

/// A sysctl set for the length of a test, and set back afterwards, pass or
/// fail.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    /// Sets `path` to `value`; None (and the reason) when this process may
    /// not.
    fn set(path: &'static str, value: &str) -> Result<Sysctl, String> {
        let old = std::fs::read_to_string(path).map_err(|err| format!("{path}: {err}"))?;
        if !nix::unistd::geteuid().is_root() {
            return Err(format!("setting {path} needs root"));
        }
        std::fs::write(path, value).map_err(|err| format!("cannot write {path}: {err}"))?;
        Ok(Sysctl {
            path,
            old: old.trim().to_owned(),
        })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, &self.old);
    }
}

const MIGRATE: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// What happened to the clients that waited in the queues of a server
/// that closed its listeners: how many a second server answered, how many
/// were reset.
#[derive(Debug, PartialEq, Eq)]
struct Fate {
    waited: usize,
    answered: usize,
    reset: usize,
}

/// Two servers share a port (SO_REUSEPORT): the first with two workers,
/// the second joining it with one (`--share-port`). The first is stopped
/// (SIGSTOP) while clients connect and send their requests: the kernel
/// queues about two in three of them at its listeners, where nobody
/// accepts them, and the second server answers the rest. Then the first
/// server is killed, and the kernel closes its listeners with clients in
/// their queues.
fn clients_in_the_queues_of_a_server_that_exits() -> Fate {
    const CLIENTS: usize = 30;
    let mut old = Server::start(BINARY, &["--quiet", "--workers", "2"]);
    let addr = old.addr().to_string();
    let new = Server::start(
        BINARY,
        &["--quiet", "--workers", "1", "--share-port", "--addr", &addr],
    );
    old.signal(libc::SIGSTOP);
    assert!(wait_until(PATIENCE, || state(old.pid()) == 'T'));

    let (done_tx, done_rx) = mpsc::channel();
    for _ in 0..CLIENTS {
        let mut client: TcpStream = connect(new.addr());
        client.write_all(GET).unwrap();
        let done_tx = done_tx.clone();
        thread::spawn(move || {
            let mut answer = Vec::new();
            let outcome = client.read_to_end(&mut answer).map(|_| answer);
            let _ = done_tx.send(outcome);
        });
    }
    // Every client is either answered by the new server or waiting in one
    // of the old one's accept queues (the kernel's count for a listener).
    let mut answered = 0;
    let waiting = || accept_queues(old.pid()).iter().sum::<usize>();
    assert!(
        wait_until(PATIENCE, || {
            while let Ok(outcome) = done_rx.try_recv() {
                assert_eq!(outcome.expect("an answer"), RESPONSE);
                answered += 1;
            }
            answered + waiting() == CLIENTS
        }),
        "{answered} answered and {} waiting, of {CLIENTS}",
        waiting()
    );
    let waited = waiting();
    assert!(waited > 0, "no client hashed to the old server's listeners");

    // The old server dies while still stopped (SIGKILL needs no running
    // process): the kernel closes its listening sockets with the clients
    // still in their queues, and no worker runs to accept one first. (A
    // SIGTERM and SIGCONT let the workers wake for the queued clients and
    // take some before they learn of the stop: 15 of 21 once, under load.)
    old.signal(libc::SIGKILL);
    let status = old.wait_exit(PATIENCE).expect("the old server dies");
    assert!(!status.success(), "{status}");

    let mut fate = Fate {
        waited,
        answered: 0,
        reset: 0,
    };
    for _ in 0..waited {
        match done_rx.recv_timeout(PATIENCE + PATIENCE) {
            Ok(Ok(answer)) => {
                assert_eq!(answer, RESPONSE);
                fate.answered += 1;
            }
            Ok(Err(err)) if err.kind() == ErrorKind::ConnectionReset => fate.reset += 1,
            Ok(Err(err)) => panic!("a waiting client: {err}"),
            Err(_) => panic!("a waiting client never heard anything: {fate:?}"),
        }
    }
    // The new server still serves.
    assert_eq!(request(new.addr(), GET), RESPONSE);
    fate
}

/// By default, closing a listening socket resets the connections waiting
/// in its accept queue, even when other sockets of its SO_REUSEPORT group
/// listen on: a server restarted that way drops clients. With
/// net.ipv4.tcp_migrate_req = 1 (Linux 5.14) the kernel moves them to
/// another listener of the group instead, and they are answered.
#[test]
fn closing_a_reuseport_listener_resets_its_queue_unless_migration_is_on() {
    let current = std::fs::read_to_string(MIGRATE).unwrap_or_default();
    for (value, expect_moved) in [("0", false), ("1", true)] {
        let guard = match Sysctl::set(MIGRATE, value) {
            Ok(guard) => Some(guard),
            Err(_) if current.trim() == value => None,
            Err(why) => {
                eprintln!("SKIPPED the case tcp_migrate_req = {value}: {why}");
                continue;
            }
        };
        let migrated_before = tcp_ext("TCPMigrateReqSuccess");
        let fate = clients_in_the_queues_of_a_server_that_exits();
        drop(guard);
        if expect_moved {
            // The kernel's own count of connections it moved (for the whole
            // machine: at least ours).
            let migrated = tcp_ext("TCPMigrateReqSuccess") - migrated_before;
            assert!(migrated >= fate.waited as u64, "{migrated} moved: {fate:?}");
        }
        let expected = if expect_moved {
            (fate.waited, 0)
        } else {
            (0, fate.waited)
        };
        assert_eq!(
            (fate.answered, fate.reset),
            expected,
            "tcp_migrate_req = {value}: {fate:?}"
        );
    }
}
