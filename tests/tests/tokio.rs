//! Example 15, the same server on tokio: what the runtime does for us, seen
//! from outside. Each socket is registered once, for both directions; a
//! task waiting for bytes leaves its thread in epoll_wait; the runtime's
//! threads exist from the start; and the accept loop most examples show
//! dies, or spins, when file descriptors run out.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tests::client::PATIENCE;
use tests::limits::limit_nofile;
use tests::process::{self, Busy, threads_in_epoll_wait};
use tests::{GET, RESPONSE, Server, connect, wait_until};

const NAME: &str = "example15_tokio";
const RUNTIMES: [&[&str]; 2] = [
    &["--runtime", "current-thread"],
    &["--runtime", "multi-thread"],
];

const EPOLLIN: u32 = 0x001;
const EPOLLOUT: u32 = 0x004;
const EPOLLERR: u32 = 0x008;
const EPOLLHUP: u32 = 0x010;
const EPOLLRDHUP: u32 = 0x2000;
const EPOLLET: u32 = 1 << 31;

fn start(runtime: &[&str]) -> Server {
    Server::start(NAME, &[runtime, &["--quiet"]].concat())
}

/// Starts the server with `--trace`, which prints each step of a task
/// (`fd 9: read 10 bytes`): the tests wait for those lines.
fn start_traced(runtime: &[&str]) -> Server {
    Server::start(NAME, &[runtime, &["--quiet", "--trace"]].concat())
}

/// Waits until the server's trace says a task has read `n` bytes.
fn wait_for_read(server: &Server, n: usize) {
    let line = format!(": read {n} bytes");
    assert!(
        server.wait_for_stderr(PATIENCE, |trace| trace.contains(&line)),
        "no `{line}` in the trace:\n{}",
        server.stderr()
    );
}

/// tokio registers each socket once, for reading and writing at once
/// (mio's READABLE|WRITABLE: EPOLLIN|EPOLLRDHUP|EPOLLOUT, edge-triggered),
/// and keeps track of readiness itself: where example 14 switched a
/// connection from EPOLLIN to EPOLLOUT with epoll_ctl(EPOLL_CTL_MOD),
/// tokio never modifies an entry. The kernel's record of the entry says
/// so, before and after the request.
#[test]
fn each_socket_is_registered_once_for_both_directions() {
    for runtime in RUNTIMES {
        let server = start_traced(runtime);
        let (mut client, events) = server.silent_client_interest();
        let both = EPOLLIN | EPOLLRDHUP | EPOLLOUT | EPOLLET;
        assert_eq!(
            events & !(EPOLLERR | EPOLLHUP),
            both,
            "{runtime:?}: a connection registered with {events:#x}"
        );
        // Half a request: the task has read it and waits for more, with
        // the same entry.
        client.write_all(&GET[..10]).unwrap();
        wait_for_read(&server, 10);
        let pid = server.pid();
        // The one connection's entries, each once: tokio's driver holds
        // its epoll instance by two fds (a dup for its Registry), and
        // /proc lists the entries under both.
        let connections = process::connection_fds(pid);
        let entries: BTreeSet<(i32, u32)> = process::epoll_interest(pid)
            .into_iter()
            .filter(|(fd, _)| connections.contains(fd))
            .collect();
        let masks: Vec<u32> = entries.into_iter().map(|(_, mask)| mask).collect();
        assert_eq!(masks, [events], "{runtime:?}: the entry changed");
        client.write_all(&GET[10..]).unwrap();
        let mut response = Vec::new();
        client.read_to_end(&mut response).unwrap();
        assert_eq!(response, RESPONSE, "{runtime:?}");
    }
}

/// `.await` on a socket with nothing to read returns to the runtime, which,
/// with no other task to run, sleeps in epoll_wait: a client that has sent
/// half a request holds no thread. (A task that read its socket with a
/// blocking read would hold its thread in recvfrom instead, and the other
/// tasks of that thread would wait.)
#[test]
fn a_task_waiting_for_bytes_leaves_its_thread_in_epoll_wait() {
    for runtime in RUNTIMES {
        let server = start_traced(runtime);
        let pid = server.pid();
        let mut half = connect(server.addr());
        half.write_all(&GET[..10]).unwrap();
        // The task has read the half, and its next read found nothing.
        wait_for_read(&server, 10);
        // Every thread of the runtime is asleep: one in epoll_wait, the
        // others (multi-thread) waiting on a futex for work.
        let asleep = wait_until(PATIENCE, || threads_in_epoll_wait(pid) == 1);
        assert!(
            asleep,
            "{runtime:?}: no thread went back to epoll_wait: {:?}",
            process::thread_syscalls(pid)
        );
        // And the thread is free: another client is served meanwhile.
        assert_eq!(tests::request(server.addr(), GET), RESPONSE, "{runtime:?}");
        half.write_all(&GET[10..]).unwrap();
        let mut response = Vec::new();
        half.read_to_end(&mut response).unwrap();
        assert_eq!(response, RESPONSE, "{runtime:?}");
    }
}

/// The current-thread runtime runs everything on the main thread; the
/// multi-thread runtime adds one worker per CPU, all started before the
/// first client (so the tests' baselines see them), and no more under
/// load.
#[test]
fn the_runtime_threads_exist_from_the_start() {
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    for (runtime, threads) in [(RUNTIMES[0], 1), (RUNTIMES[1], 1 + cpus)] {
        let server = start(runtime);
        let pid = server.pid();
        assert!(
            wait_until(PATIENCE, || process::threads(pid) == threads),
            "{runtime:?}: {} threads, expected {threads}: {:?}",
            process::threads(pid),
            process::thread_syscalls(pid)
        );
        let addr = server.addr();
        let clients: Vec<_> = (0..50)
            .map(|_| std::thread::spawn(move || tests::request(addr, GET)))
            .collect();
        for client in clients {
            assert_eq!(client.join().unwrap(), RESPONSE);
        }
        assert_eq!(
            process::threads(pid),
            threads,
            "{runtime:?} after 50 clients"
        );
    }
}

/// Starts the naive server (example15_tokio's example `naive_accept`) with
/// at most 64 file descriptors, and connects 100 silent clients: accept(2)
/// fails with EMFILE while clients still wait in the queue.
fn naive_out_of_descriptors(args: &[&str]) -> (Server, Vec<TcpStream>) {
    let server = Server::start_example(NAME, "naive_accept", args, |command| {
        limit_nofile(command, 64)
    });
    // The `?` version may die before the last of them connects: then its
    // listener is gone, and the rest are refused.
    let clients = (0..100)
        .map_while(|_| TcpStream::connect(server.addr()).ok())
        .collect();
    (server, clients)
}

/// `loop { let (socket, _) = listener.accept().await?; ... }`: the first
/// EMFILE is returned from `main`, and the server exits, dropping every
/// client it held. (Example 15 pauses instead: the table's
/// out_of_file_descriptors_neither_kills_nor_spins.)
#[test]
fn a_naive_accept_loop_dies_when_descriptors_run_out() {
    let (mut server, mut clients) = naive_out_of_descriptors(&["--quiet"]);
    let status = server
        .wait_exit(PATIENCE)
        .expect("the naive server still runs with accept(2) failing");
    assert!(!status.success(), "{status}");
    // (Its last words may still be on their way through the pipe.)
    assert!(
        server.wait_for_stderr(PATIENCE, |err| err.contains("Too many open files")),
        "stderr: {}",
        server.stderr()
    );
    // Its first client, accepted and then dropped with the process: the
    // connection ends without an answer.
    clients[0].set_read_timeout(Some(PATIENCE)).unwrap();
    clients[0].write_all(GET).ok();
    let mut answer = Vec::new();
    let _ = clients[0].read_to_end(&mut answer);
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
}

/// Logging the error and calling accept again is worse: tokio still holds
/// the listener for readable (it forgets that only on EAGAIN), so
/// `accept().await` calls accept(2) again at once, and fails again. A busy
/// loop, for as long as descriptors are short.
#[test]
fn a_naive_accept_loop_that_logs_and_retries_spins() {
    let (mut server, _clients) = naive_out_of_descriptors(&["--quiet", "--log-and-retry"]);
    assert!(
        server.wait_for_stderr(PATIENCE, |err| err.contains("Too many open files")),
        "stderr: {}",
        server.stderr()
    );
    let busy = Busy::over_a_second(server.pid());
    assert!(busy.spins(), "the naive server does not spin: {busy}");
    assert!(server.wait_exit(Duration::ZERO).is_none(), "it exited");
}
