//! Issue 6 for example 9, the epoll loop that watches any fd: under load,
//! faults, bad input and exhaustion it keeps printing what its clients
//! send, and leaves nothing behind (after each test its fd count and its
//! epoll interest list are back where they started).
//!
//! Where a point of the issue does not apply, a comment says why:
//! - slow readers, and writes that meet a closed socket (EPIPE): the server
//!   never writes to a client. It only reads, and prints to its own stdout.
//! - a cap on a request: there are no requests. Each read of at most 1024
//!   bytes goes straight to stdout; nothing is kept between reads
//!   (`megabytes_without_a_newline_keep_memory_bounded`).
//! - SIGINT and SIGTERM are pinned by `watch_fds.rs` (`stop_signals_exit_0`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Command as StdCommand, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tests::client::PATIENCE;
use tests::command_line::{assert_help_mentions, assert_refused, command, stderr};
use tests::process::{assert_not_spinning, fd_count, peak_rss_kib};
use tests::raw::{self, Killed, Raw, drain, pipe_fill};
use tests::{Holdings, Server, connect, wait_until};

const NAME: &str = "example09_watch_fds";

/// Starts the server, has it print one client's line, and returns it with
/// what it holds then. Its fds all exist before its `listening on` line,
/// but the listener joins the epoll interest list just after it: a
/// baseline taken at once could miss that entry.
fn settled_with(configure: impl FnOnce(&mut StdCommand)) -> (Server, Holdings) {
    let server = Server::start_with(NAME, &[], configure);
    assert_prints(&server, "warm-up\n");
    let baseline = server.idle_holdings();
    (server, baseline)
}

fn settled() -> (Server, Holdings) {
    settled_with(|_| {})
}

/// Sends `text` from a new client, closes, and waits until the server has
/// printed it.
fn assert_prints(server: &Server, text: &str) {
    connect(server.addr()).write_all(text.as_bytes()).unwrap();
    assert!(
        server.wait_for_stdout(PATIENCE, |out| out.contains(text)),
        "{text:?} never appeared on stdout:\n{}",
        server.stdout()
    );
}

/// Waits until the server holds `baseline` again, then checks that it
/// still prints what a client sends and never panicked.
fn assert_back(server: &Server, baseline: Holdings) {
    server.assert_back_to(baseline);
    assert_prints(server, "still there?\n");
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

/// How many log lines contain `what`.
fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|line| line.contains(what)).count()
}

// --------------------------------------------------------------- load

/// 100 clients at once, 10,000 connections in all, each sending one line
/// and closing: every line is printed once, every hang-up logged and
/// closed, no error.
#[test]
fn ten_thousand_clients_from_100_threads_all_printed() {
    const CLIENTS: usize = 100;
    const EACH: usize = 100;
    const TOTAL: usize = CLIENTS * EACH;
    let (server, baseline) = settled();
    let addr = server.addr();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|client| {
            thread::spawn(move || {
                let mut failures = 0;
                for round in 0..EACH {
                    let line = format!("client {client:03} round {round:03}\n");
                    if TcpStream::connect(addr)
                        .and_then(|mut stream| stream.write_all(line.as_bytes()))
                        .is_err()
                    {
                        failures += 1;
                    }
                }
                failures
            })
        })
        .collect();
    let failures: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(failures, 0, "{failures} of {TOTAL} clients failed");
    // Every connection closed by the server means every line was read, and
    // printed, before the read of 0 that closed it.
    server.assert_back_to(baseline);
    assert!(
        server.wait_for_stdout(PATIENCE, |out| count(out, "client ") >= TOTAL),
        "{} of {TOTAL} lines printed",
        count(&server.stdout(), "client ")
    );
    let out = server.stdout();
    // Every line but the warm-up's.
    let mut lines: Vec<&str> = out.lines().filter(|l| *l != "warm-up").collect();
    lines.sort_unstable();
    let mut expected: Vec<String> = (0..CLIENTS)
        .flat_map(|c| (0..EACH).map(move |r| format!("client {c:03} round {r:03}")))
        .collect();
    expected.sort_unstable();
    assert!(
        lines == expected,
        "the lines printed are not the lines sent"
    );
    // The log comes through its own pipe: wait for its last lines too.
    assert!(
        server.wait_for_stderr(PATIENCE, |log| count(log, " hung up (") > TOTAL),
        "{} of {TOTAL} hang-ups logged",
        count(&server.stderr(), " hung up (")
    );
    let log = server.stderr();
    // Each client's, and the warm-up's.
    assert_eq!(count(&log, " hung up ("), TOTAL + 1, "hang-ups logged");
    // (The note that stdin, /dev/null here, cannot be watched is no error.)
    for error in [
        "is gone",
        "failed",
        "cannot watch a client",
        "cannot make",
        "panicked",
    ] {
        assert_eq!(count(&log, error), 0, "`{error}` in the log");
    }
    assert_back(&server, baseline);
}

/// 10,000 idle connections are 10,000 entries in the interest list and
/// cost nothing until one of them speaks: another client's text still
/// appears at once, and so does a line from one of the idle ones.
#[test]
fn ten_thousand_idle_connections_while_another_client_is_printed() {
    const IDLE: usize = 10_000;
    // The idle clients' fds are ours and their accepted sockets the
    // server's: both processes need room for 10,000 more. The server
    // inherits our limit.
    if let Err(why) = tests::limits::raise_nofile(IDLE as u64 + 1_000) {
        eprintln!("SKIPPED ten_thousand_idle_connections_while_another_client_is_printed: {why}");
        return;
    }
    let (server, baseline) = settled();
    let mut idle: Vec<TcpStream> = (0..IDLE).map(|_| connect(server.addr())).collect();
    // The server accepts a connection, then registers it: the fd count can
    // be one ahead of the interest list for a moment, so wait for both.
    let (mut fds, mut interest) = (0, 0);
    assert!(
        wait_until(PATIENCE, || {
            fds = fd_count(server.pid());
            interest = tests::process::epoll_interest(server.pid()).len();
            fds == baseline.fds + IDLE && interest == baseline.interest + IDLE
        }),
        "of {IDLE} connections, {} fds and {} interest entries: one of each per connection",
        fds as isize - baseline.fds as isize,
        interest as isize - baseline.interest as isize
    );
    assert_prints(&server, "a busy client among idle ones\n");
    idle[IDLE / 2]
        .write_all(b"the idle one in the middle speaks\n")
        .unwrap();
    assert!(
        server.wait_for_stdout(PATIENCE, |out| out.contains("the idle one in the middle")),
        "{}",
        server.stdout()
    );
    drop(idle);
    assert_back(&server, baseline);
}

// --------------------------------------------------------------- faults

/// Clients that reset (RST) in the middle of what they send: some after
/// the server has printed their first line, some at once. The server
/// reads the reset as ECONNRESET (or, if the data came first, prints it
/// and then sees the reset), logs the client as gone and closes it.
#[test]
fn clients_that_reset_mid_stream() {
    let (server, baseline) = settled();
    for client in 0..100 {
        let mut stream = connect(server.addr());
        let first = format!("client {client} first line\n");
        stream.write_all(first.as_bytes()).unwrap();
        if client % 2 == 0 {
            assert!(
                server.wait_for_stdout(PATIENCE, |out| out.contains(&first)),
                "{first:?} not printed"
            );
            stream.write_all(b"half a line, then ").unwrap();
        }
        tests::client::reset(stream);
    }
    assert_back(&server, baseline);
    // The clients that reset after being printed were logged as gone
    // (those whose reset came at once may be read as data and a reset, or
    // only a reset): the error is handled, not fatal.
    assert!(
        server.wait_for_stderr(PATIENCE, |log| count(log, " is gone (") >= 1),
        "no reset logged:\n{}",
        server.stderr()
    );
}

/// Clients that close right after sending: the server reads their bytes
/// and the end of the stream in the same wakeup or the next one; every
/// line is printed and every connection closed.
#[test]
fn clients_that_close_right_after_sending() {
    let (server, baseline) = settled();
    for client in 0..200 {
        connect(server.addr())
            .write_all(format!("closed at once {client:03}\n").as_bytes())
            .unwrap();
    }
    let lines: Vec<String> = (0..200)
        .map(|client| format!("closed at once {client:03}\n"))
        .collect();
    assert!(
        server.wait_for_stdout(PATIENCE, |out| lines.iter().all(|l| out.contains(l))),
        "not every line printed:\n{}",
        server.stdout()
    );
    assert_back(&server, baseline);
}

/// Half-close: a client sends a line, shuts down its sending side and
/// keeps reading. The line is printed, then the server sees the end of
/// the stream (EPOLLRDHUP, read 0), closes its end, and the client reads
/// the end of the stream in turn: nothing is left half-open.
#[test]
fn a_half_closed_client_is_printed_then_closed() {
    let (server, baseline) = settled();
    let mut client = connect(server.addr());
    let me = client.local_addr().unwrap();
    client.write_all(b"my last words\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    // Returns when the server closes: it never writes, so nothing comes.
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the server wrote {rest:?}");
    assert!(
        server.wait_for_stdout(PATIENCE, |out| out.contains("my last words\n")),
        "not printed:\n{}",
        server.stdout()
    );
    // The log says in which order: the line was read, then the hang-up.
    let read = format!("read 14 bytes from client {me}");
    let hung_up = format!("client {me} hung up (EPOLLRDHUP): closing");
    assert!(
        server.wait_for_stderr(PATIENCE, |log| log.contains(&hung_up)),
        "{}",
        server.stderr()
    );
    let log = server.stderr();
    assert!(
        log.find(&read)
            .is_some_and(|at| at < log.find(&hung_up).unwrap()),
        "not read before the hang-up:\n{log}"
    );
    drop(client);
    assert_back(&server, baseline);
}

// --------------------------------------------------------------- bad input

/// Starts the server with stdout and stderr as pipes of the test's own
/// (the harness's [`Server`] reads both for us, and turns them into text),
/// read no further than the `listening on` line.
fn spawn_raw() -> Raw {
    raw::start(NAME, &[], Stdio::piped())
}

/// What a server started by [`spawn_raw`] holds once it is in its loop:
/// a first client accepted (so the listener is in the interest list, which
/// it joins just after the `listening on` line) and closed again.
fn settle_raw(child: &Killed, addr: SocketAddr) -> Holdings {
    let pid = child.pid();
    let fds = fd_count(pid);
    let warm_up = connect(addr);
    assert!(
        wait_until(PATIENCE, || fd_count(pid) == fds + 1),
        "the first client was never accepted"
    );
    drop(warm_up);
    assert!(
        wait_until(PATIENCE, || fd_count(pid) == fds),
        "the first client was never closed"
    );
    Holdings::of(pid)
}

/// The server with its stdout as raw bytes: the harness's text would hide
/// whether invalid UTF-8 went through as bytes or was replaced.
struct RawServer {
    child: Killed,
    addr: SocketAddr,
    chunks: mpsc::Receiver<Vec<u8>>,
    stdout: Vec<u8>,
}

impl RawServer {
    fn start() -> RawServer {
        let Raw {
            process: child,
            addr,
            stdout: mut reader,
            stderr,
        } = spawn_raw();
        drain(stderr.unwrap());
        let (tx, chunks) = mpsc::channel();
        thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            while let Ok(n @ 1..) = reader.read(&mut buffer) {
                if tx.send(buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        RawServer {
            child,
            addr,
            chunks,
            stdout: Vec::new(),
        }
    }

    /// Waits until stdout contains `bytes`; returns whether it did.
    fn wait_for(&mut self, bytes: &[u8]) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.stdout.windows(bytes.len()).any(|w| w == bytes) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.stdout.extend_from_slice(&chunk),
                Err(_) => return false,
            }
        }
    }
}

/// Every byte value, invalid UTF-8 included, reaches stdout as it came:
/// stdout takes bytes, so nothing is replaced, escaped or refused.
#[test]
fn binary_bytes_are_printed_as_bytes() {
    let mut server = RawServer::start();
    let baseline = settle_raw(&server.child, server.addr);
    let mut sent = b"<<".to_vec();
    sent.extend(0..=255u8);
    sent.extend_from_slice(b"\xff\xfe\xc3(\xed\xa0\x80>>");
    let mut client = connect(server.addr);
    client.write_all(&sent).unwrap();
    assert!(
        server.wait_for(&sent),
        "stdout: {:?}",
        server.stdout.escape_ascii().to_string()
    );
    drop(client);
    // And it goes on: a text line after the garbage.
    connect(server.addr)
        .write_all(b"after the garbage\n")
        .unwrap();
    assert!(server.wait_for(b"after the garbage\n"));
    assert!(
        wait_until(PATIENCE, || Holdings::of(server.child.pid()) == baseline),
        "holds {:?}, {baseline:?} before",
        Holdings::of(server.child.pid())
    );
}

/// The analogue of a write to a closed socket here: a stdout whose reader
/// has gone. Each write then fails with EPIPE. Rust sets SIGPIPE to
/// "ignore" before `main`, so that is an error, which the server ignores,
/// not a death by signal (the default action of SIGPIPE): it goes on
/// serving, and stops cleanly when told.
#[test]
fn a_closed_stdout_is_no_reason_to_stop() {
    let Raw {
        process: mut child,
        addr,
        stdout,
        stderr,
    } = spawn_raw();
    // The log, line by line: it says when each client has been read (and
    // so printed into the void: the write comes before the log line) and
    // closed. The fd count alone cannot: it is back at the baseline both
    // before the server has accepted anyone and after it has closed them.
    let (log_tx, log) = mpsc::channel();
    let stderr = BufReader::new(stderr.unwrap());
    thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if log_tx.send(line).is_err() {
                break;
            }
        }
    });
    let baseline = settle_raw(&child, addr);
    drop(stdout);
    const CLIENTS: usize = 20;
    let mut sent = 0;
    for line in 0..CLIENTS {
        let text = format!("a line nobody reads {line}\n");
        sent += text.len();
        connect(addr).write_all(text.as_bytes()).unwrap();
    }
    // Every client read, printed into the void, and closed: as many
    // hang-ups as clients, the warm-up client's included, and every byte
    // read.
    let (mut hang_ups, mut read) = (0, 0);
    let deadline = Instant::now() + PATIENCE;
    while hang_ups < CLIENTS + 1 || read < sent {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = log.recv_timeout(left) else {
            panic!(
                "{hang_ups} hang-ups (of {}) and {read} bytes read (of {sent}) logged; \
                 exited: {:?}",
                CLIENTS + 1,
                child.wait_exit(Duration::ZERO)
            );
        };
        if line.contains(" hung up ") {
            hang_ups += 1;
        } else if let Some((_, after)) = line.split_once(": read ")
            && let Some((bytes, _)) = after.split_once(" bytes from client ")
        {
            read += bytes.parse::<usize>().unwrap();
        }
    }
    assert!(
        wait_until(PATIENCE, || child.wait_exit(Duration::ZERO).is_some()
            || Holdings::of(child.pid()) == baseline),
        "holds {:?}, {baseline:?} before",
        Holdings::of(child.pid())
    );
    assert_eq!(child.wait_exit(Duration::ZERO), None, "the server died");
    child.signal(libc::SIGTERM);
    let status = child.wait_exit(PATIENCE).expect("SIGTERM did not stop it");
    assert_eq!(status.code(), Some(0), "{status}");
}

/// Clients that send megabytes without a newline: each read of at most
/// 1024 bytes goes to stdout at once, with write(2) and no buffer of its
/// own, so the server's memory does not grow with what it is sent. (A
/// line-buffered stdout would wait for a newline; std's `LineWriter`
/// passes a write as large as its 1 KiB buffer straight through.)
#[test]
fn megabytes_without_a_newline_keep_memory_bounded() {
    const CLIENTS: usize = 4;
    const EACH: usize = 4 << 20;
    let (server, baseline) = settled();
    let peak_before = peak_rss_kib(server.pid());
    let addr = server.addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            thread::spawn(move || {
                connect(addr).write_all(&vec![b'x'; EACH]).unwrap();
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    // All connections closed: every byte has been read and printed.
    server.assert_back_to(baseline);
    let growth_kib = peak_rss_kib(server.pid()).saturating_sub(peak_before);
    assert!(
        growth_kib < 4 * 1024,
        "peak memory grew by {growth_kib} KiB for {} MiB received",
        (CLIENTS * EACH) >> 20
    );
    let printed = |out: &str| out.bytes().filter(|&b| b == b'x').count();
    assert!(
        server.wait_for_stdout(PATIENCE, |out| printed(out) >= CLIENTS * EACH),
        "{} of {} bytes printed",
        printed(&server.stdout()),
        CLIENTS * EACH
    );
    assert_eq!(printed(&server.stdout()), CLIENTS * EACH);
    assert_back(&server, baseline);
}

// --------------------------------------------------------------- exhaustion

/// With RLIMIT_NOFILE at 64 and 100 clients, accept(2) fails with EMFILE
/// while clients still wait in the queue. Level-triggered, the listener
/// stays readable, so retrying at once would spin. The server stops
/// watching the listener (EPOLL_CTL_MOD with no events) and waits at most
/// 100 ms before re-arming it: it neither dies nor spins, the clients it
/// holds are still printed, and it takes everyone once they leave.
#[test]
fn out_of_file_descriptors_neither_kills_nor_spins() {
    let (mut server, baseline) = settled_with(|command| tests::limits::limit_nofile(command, 64));
    let mut clients: Vec<TcpStream> = (0..100).map(|_| connect(server.addr())).collect();
    assert!(
        server.wait_for_stderr(PATIENCE, |log| log.contains("accept failed, pausing")),
        "no EMFILE reported; holds {} fds:\n{}",
        fd_count(server.pid()),
        server.stderr()
    );
    assert!(
        fd_count(server.pid()) >= 60,
        "holds only {} fds",
        fd_count(server.pid())
    );
    assert_not_spinning(server.pid(), NAME);
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "the server died"
    );
    // The first client was accepted before the fds ran out: it is served.
    clients[0].write_all(b"held while out of fds\n").unwrap();
    assert!(
        server.wait_for_stdout(PATIENCE, |out| out.contains("held while out of fds\n")),
        "{}",
        server.stdout()
    );
    drop(clients);
    assert_back(&server, baseline);
}

// --------------------------------------------------------------- command line

/// `--help` says how to stop the server, and names `--watch` and `--addr`.
#[test]
fn help_says_how_to_stop_it() {
    assert_help_mentions(
        NAME,
        &[
            "Ctrl-C", "SIGINT", "SIGTERM", "status 0", "--watch", "--addr",
        ],
    );
}

/// Bad arguments, a `--watch` without its directory included, exit with
/// status 2 and a message, not a panic.
#[test]
fn bad_arguments_exit_2_with_a_message() {
    for args in [
        &["--backlog", "0"][..],
        &["--addr", "nowhere"][..],
        &["--watch"][..],
        &["--bogus"][..],
        &["surplus"][..],
    ] {
        assert_refused(NAME, args);
    }
}

/// A directory that cannot be watched is an error in one line, exit 1.
#[test]
fn an_unwatchable_directory_is_one_line() {
    let output = command(NAME)
        .args(["--addr", "127.0.0.1:0", "--watch", "/nonexistent/dir"])
        .assert()
        .code(1);
    let stderr = stderr(output.get_output());
    assert!(stderr.contains("cannot watch /nonexistent/dir"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(count(&stderr, "Error"), 1, "{stderr}");
}

/// A busy port is one error line and status 1, and the server that holds
/// the port goes on.
#[test]
fn a_busy_port_is_one_line_not_a_panic() {
    let (first, _) = settled();
    let output = command(NAME)
        .args(["--addr", &first.addr().to_string()])
        .assert()
        .code(1);
    let stderr = stderr(output.get_output());
    assert!(stderr.contains("the port is in use"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The event log's lines (stdin, signalfd) come first; the error is one
    // line of its own.
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("Error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].starts_with("Error: cannot listen on"), "{stderr}");
    // The first server did not notice.
    assert_prints(&first, "unharmed\n");
}

// --------------------------------------------------------------- shutdown

/// Which output of the server nobody reads.
#[derive(Debug, Clone, Copy)]
enum Stuck {
    Stdout,
    Stderr,
}

/// Starts the server with `stuck` a pipe that the test never reads (the
/// other output is drained), and floods it from a client until that pipe
/// is full: every further write(2) to it would block.
fn start_with_a_full_pipe(stuck: Stuck) -> (Killed, OwnedFd) {
    let Raw {
        process: child,
        addr,
        stdout,
        stderr,
    } = spawn_raw();
    let stderr = stderr.unwrap();
    let unread = match stuck {
        Stuck::Stdout => {
            drain(stderr);
            OwnedFd::from(stdout)
        }
        Stuck::Stderr => {
            drain(stdout);
            OwnedFd::from(stderr)
        }
    };
    // 1 KiB per read goes to stdout, and two log lines to stderr: 4 MiB
    // fill either pipe many times over. The client blocks once the server
    // stops reading, and fails once the server is gone.
    thread::spawn(move || {
        let Ok(mut flood) = TcpStream::connect(addr) else {
            return;
        };
        for _ in 0..64 {
            if flood.write_all(&[b'x'; 64 * 1024]).is_err() {
                break;
            }
        }
    });
    // Full: the pipe holds nearly its size (writes of up to 1 KiB do not
    // share a page they do not fit in, so up to 16 x 1 KiB may stay free)
    // and stops growing while the flood goes on. The server is then stuck,
    // or about to be: either way it must stop on a signal.
    let mut fill = pipe_fill(&unread);
    let full = wait_until(PATIENCE, || {
        thread::sleep(Duration::from_millis(100));
        let now = pipe_fill(&unread);
        let stuck = now == fill && now.0 + 16 * 1024 >= now.1;
        fill = now;
        stuck
    });
    assert!(full, "{stuck:?} never filled up: {fill:?}");
    (child, unread)
}

/// A stdout or stderr that nobody reads (a pager left on its first page, a
/// terminal paused with Ctrl-S) blocks the server's next write. The stop
/// signals must still stop it, promptly and with status 0: the loop
/// cannot read them from its signalfd while it is stuck in write(2), so
/// output waits with poll(2) for room or a stop signal (output.rs).
#[test]
fn stop_signals_work_while_nobody_reads_the_output() {
    for (stuck, signal) in [
        (Stuck::Stdout, libc::SIGTERM),
        (Stuck::Stderr, libc::SIGTERM),
        (Stuck::Stdout, libc::SIGINT),
    ] {
        let (mut child, _unread) = start_with_a_full_pipe(stuck);
        child.signal(signal);
        let status = child.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
            panic!("{stuck:?} full: signal {signal} did not stop the server within 5 s")
        });
        assert_eq!(status.code(), Some(0), "{stuck:?} full, signal {signal}");
    }
}
