//! Example 7, a thread per connection: it answers beside a silent client
//! like the epoll servers, but every connection costs a thread, which
//! epoll's do not; and a cap keeps the thread count bounded.
//!
//! What every server must do with a request is checked for example 7 in
//! `answers.rs` (`…_example07_threads`); here is what threads change.

use std::io::Read;
use std::net::TcpStream;

use tests::client::PATIENCE;
use tests::command_line::assert_help_mentions;
use tests::process::{status, threads};
use tests::targets::UNAVAILABLE;
use tests::{GET, RESPONSE, Server, connect, request, wait_until};

const THREADS: &str = "example07_threads";

fn quiet(args: &[&str]) -> Server {
    let mut all = vec!["--quiet"];
    all.extend_from_slice(args);
    Server::start(THREADS, &all)
}

/// Waits until `server` runs `count` threads, and fails the test if it
/// never does.
fn wait_for_threads(server: &Server, count: u64) {
    let reached = wait_until(PATIENCE, || threads(server.pid()) == count);
    assert!(
        reached,
        "expected {count} threads, the server has {}",
        threads(server.pid())
    );
}

/// Like the epoll servers (and unlike example 2), a client that says
/// nothing blocks only its own thread: the next client is answered while
/// it is still connected.
#[test]
fn a_silent_client_does_not_stall_the_others() {
    let server = quiet(&[]);
    let _silent = connect(server.addr());
    // Make sure the silent client has its thread (main + stop + 1).
    wait_for_threads(&server, 3);
    assert_eq!(request(server.addr(), GET), RESPONSE);
}

/// SIGTERM stops example 7 with status 0, a thread still blocked on a
/// silent client.
#[test]
fn sigterm_exits_0() {
    let mut server = quiet(&[]);
    let _silent = connect(server.addr());
    wait_for_threads(&server, 3);
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(PATIENCE).expect("the server did not stop");
    assert_eq!(status.code(), Some(0), "{status}");
}

/// `--help` documents `--max-threads` and the 503 past it.
#[test]
fn help_documents_the_cap() {
    assert_help_mentions(
        THREADS,
        &["--addr", "--quiet", "--max-threads", "503", "SIGTERM"],
    );
}

/// What a server's process looks like in /proc/PID/status.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    threads: u64,
    /// Resident memory, KiB.
    rss: u64,
    /// Address space, KiB.
    size: u64,
}

fn footprint(server: &Server) -> Footprint {
    let status = status(server.pid());
    Footprint {
        threads: status.threads,
        rss: status.vmrss.expect("VmRSS"),
        size: status.vmsize.expect("VmSize"),
    }
}

const IDLE: usize = 500;

/// Opens IDLE connections that say nothing, waits until `server` holds
/// them all, and returns its footprint before and during. `resting` is its
/// thread count with no client.
fn footprint_with_idle_clients(
    server: &Server,
    resting: u64,
) -> (Footprint, Footprint, Vec<TcpStream>) {
    // One round trip first, so that one-time costs (the first print, lazily
    // mapped code) are in the baseline; then wait for its thread to end.
    assert_eq!(request(server.addr(), GET), RESPONSE);
    wait_for_threads(server, resting);
    let before = footprint(server);
    let clients: Vec<TcpStream> = (0..IDLE).map(|_| connect(server.addr())).collect();
    let held = wait_until(PATIENCE, || server.connections() == IDLE);
    assert!(held, "the server holds {} of {IDLE}", server.connections());
    (before, footprint(server), clients)
}

/// 500 idle clients: example 7 runs 500 more threads and maps at least 500
/// stacks; example 4 stays one thread and its memory barely moves.
#[test]
fn every_idle_connection_costs_a_thread_but_not_with_epoll() {
    tests::limits::raise_nofile(4 * IDLE as u64).expect("enough file descriptors");

    // Resting, example 7 runs two threads: main (accepting) and the one
    // waiting for a stop signal.
    let threaded = quiet(&[]);
    let (before, during, clients) = footprint_with_idle_clients(&threaded, 2);
    // Each thread is counted once its clone(2) has returned, which may be
    // a moment after the connection was accepted.
    wait_for_threads(&threaded, before.threads + IDLE as u64);
    let during = Footprint {
        threads: threads(threaded.pid()),
        ..during
    };
    drop(clients);

    let epoll = Server::start("example04_epoll_edge", &["--quiet"]);
    let (epoll_before, epoll_during, clients) = footprint_with_idle_clients(&epoll, 1);
    drop(clients);

    eprintln!("example07 before {before:?}, with {IDLE} idle clients {during:?}");
    eprintln!("example04 before {epoll_before:?}, with {IDLE} idle clients {epoll_during:?}");

    // One thread per connection, exactly.
    assert_eq!(during.threads - before.threads, IDLE as u64);
    // epoll: one thread, whatever the number of clients.
    assert_eq!(epoll_before.threads, 1);
    assert_eq!(epoll_during.threads, 1);

    // Address space: each thread maps its 64 KiB stack and a guard page.
    // (Measured here: about 870 MiB more, most of it glibc's malloc arenas,
    // 64 MiB of reserved address space for each of up to 8 per core, which
    // threads that allocate get. Reserved, not used: see RSS.)
    let size_growth = during.size.saturating_sub(before.size);
    assert!(
        size_growth >= IDLE as u64 * 64,
        "VmSize grew by {size_growth} KiB only"
    );
    // Resident memory: each thread touches at least a page or two of its
    // stack (and the allocator's per-thread state), epoll's map entries
    // are a few dozen bytes each. (Measured: about 10 KiB per thread,
    // 5 MiB in all, against under 200 KiB for example 4.)
    let rss_growth = during.rss.saturating_sub(before.rss);
    let epoll_rss_growth = epoll_during.rss.saturating_sub(epoll_before.rss);
    let epoll_size_growth = epoll_during.size.saturating_sub(epoll_before.size);
    assert!(
        rss_growth >= IDLE as u64 * 4,
        "RSS grew by {rss_growth} KiB only"
    );
    assert!(
        epoll_rss_growth * 4 < rss_growth,
        "epoll's RSS grew by {epoll_rss_growth} KiB, threads' by {rss_growth} KiB"
    );
    assert!(
        epoll_size_growth * 4 < size_growth,
        "epoll's VmSize grew by {epoll_size_growth} KiB, threads' by {size_growth} KiB"
    );
}

/// With --max-threads 10, ten silent clients take every thread; the next
/// ones are answered 503 at once; once the ten leave, requests are answered
/// again.
#[test]
fn past_the_cap_clients_get_503_and_the_server_lives_on() {
    let server = quiet(&["--max-threads", "10"]);
    let baseline = threads(server.pid());
    let silent: Vec<TcpStream> = (0..10).map(|_| connect(server.addr())).collect();
    wait_for_threads(&server, baseline + 10);

    for _ in 0..3 {
        // These clients only read: a refused client whose request the
        // server never reads could get a reset instead (see `refuse`).
        let mut extra = connect(server.addr());
        let mut answer = Vec::new();
        extra.read_to_end(&mut answer).unwrap();
        assert_eq!(answer, UNAVAILABLE);
    }
    assert!(
        server.wait_for_stderr(PATIENCE, |err| err.contains("all 10 threads are busy")),
        "stderr:\n{}",
        server.stderr()
    );
    // Still at the cap: no thread was started for the refused clients.
    assert_eq!(threads(server.pid()), baseline + 10);

    drop(silent);
    wait_for_threads(&server, baseline);
    assert_eq!(request(server.addr(), GET), RESPONSE);
}
