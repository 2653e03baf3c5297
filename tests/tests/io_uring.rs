//! Example 16, the server on io_uring: what changes when the kernel is
//! handed the operations instead of asked about readiness. No epoll at all;
//! a recv's completion brings the bytes; a silent client is a recv waiting
//! in the kernel; one multishot accept takes every client (and the
//! single-shot fallback one submission each); a stop cancels what is in
//! flight before it frees a buffer; and where the kernel refuses io_uring,
//! the server says why.
//!
//! Each test that runs the server skips, with a banner saying why, where
//! this kernel refuses io_uring (tests::uring).

use std::io::{Read, Write};
use std::time::Duration;

use tests::client::PATIENCE;
use tests::process::{self, threads_in_epoll_wait};
use tests::uring::{available_or_skip, refuse_io_uring_setup};
use tests::{GET, RESPONSE, Server, connect, wait_until};

const NAME: &str = "example16_io_uring";

/// io_uring's opcodes, as /proc/PID/fdinfo shows them
/// (include/uapi/linux/io_uring.h).
const IORING_OP_POLL_ADD: u32 = 6;
const IORING_OP_ACCEPT: u32 = 13;
const IORING_OP_RECV: u32 = 27;

/// What `readlink /proc/PID/fd/N` says of each fd of process `pid`:
/// `socket:[123]`, `anon_inode:[io_uring]`, ...
fn fd_kinds(pid: u32) -> Vec<String> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/PID/fd");
    dir.flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect()
}

/// The lines of a trace that concern the connection `id` (`0/1`): the
/// operation of each `submit` line, in order.
fn submissions_for(trace: &str, id: &str) -> Vec<String> {
    trace
        .lines()
        .filter_map(|line| line.strip_prefix("submit "))
        .filter_map(|rest| rest.strip_suffix(&format!(" {id}")))
        .map(str::to_owned)
        .collect()
}

/// How many lines of `trace` satisfy `matches`.
fn count(trace: &str, matches: impl Fn(&str) -> bool) -> usize {
    trace.lines().filter(|line| matches(line)).count()
}

/// Waits until the server's trace satisfies `done`, and returns it.
fn trace_when(server: &Server, what: &str, done: impl Fn(&str) -> bool) -> String {
    assert!(
        server.wait_for_stderr(PATIENCE, done),
        "{what}; the trace:\n{}",
        server.stderr()
    );
    server.stderr()
}

/// The server reads a request with no epoll at all. It has an io_uring
/// fd and no epoll fd, and while a client's request is half there, its
/// one thread sleeps in io_uring_enter(2), where every epoll server sleeps
/// in epoll_wait: the half request came as a recv's completion, and the
/// next recv waits inside the kernel.
#[test]
fn a_request_is_read_with_no_epoll_at_all() {
    if !available_or_skip("a_request_is_read_with_no_epoll_at_all") {
        return;
    }
    let server = Server::start(NAME, &["--quiet", "--trace"]);
    let pid = server.pid();
    let mut client = connect(server.addr());
    client.write_all(&GET[..10]).unwrap();
    trace_when(&server, "no recv completed with the 10 bytes", |trace| {
        trace
            .lines()
            .any(|line| line.starts_with("complete recv ") && line.ends_with(": 10"))
    });

    let kinds = fd_kinds(pid);
    assert!(
        kinds.iter().any(|kind| kind == "anon_inode:[io_uring]"),
        "no io_uring fd: {kinds:?}"
    );
    assert!(
        !kinds.iter().any(|kind| kind == "anon_inode:[eventpoll]"),
        "an epoll fd: {kinds:?}"
    );
    // /proc/PID/task/TID/syscall: the number of the call a thread sleeps in.
    let enter = libc::SYS_io_uring_enter.to_string();
    let asleep = wait_until(PATIENCE, || {
        process::thread_syscalls(pid)
            .iter()
            .any(|(tid, _, syscall)| *tid == pid && *syscall == enter)
    });
    assert!(
        asleep && threads_in_epoll_wait(pid) == 0,
        "the loop is not asleep in io_uring_enter ({enter}), or a thread is in epoll_wait: {:?}",
        process::thread_syscalls(pid)
    );

    client.write_all(&GET[10..]).unwrap();
    let mut response = Vec::new();
    client.read_to_end(&mut response).unwrap();
    assert_eq!(response, RESPONSE);
}

/// Where epoll needs an event (EPOLLIN), then a read(2), then another to
/// see EAGAIN, io_uring needs one recv submission, whose completion
/// carries the bytes. The first connection's whole life in the trace is
/// a recv, a send and a close, and the recv completed with the request's
/// every byte.
#[test]
fn one_recv_submission_brings_the_whole_request() {
    if !available_or_skip("one_recv_submission_brings_the_whole_request") {
        return;
    }
    let server = Server::start(NAME, &["--quiet", "--trace"]);
    assert_eq!(tests::request(server.addr(), GET), RESPONSE);
    // The first connection is in slot 0, generation 1.
    let trace = trace_when(&server, "the first connection never closed", |trace| {
        trace.contains("complete close 0/1")
    });
    assert_eq!(
        submissions_for(&trace, "0/1"),
        ["recv", "send", "close"],
        "the trace:\n{trace}"
    );
    let received = format!("complete recv 0/1: {}", GET.len());
    assert!(
        trace.lines().any(|line| line == received),
        "no `{received}`; the trace:\n{trace}"
    );
}

/// A silent client costs the server a recv waiting in the kernel. The
/// ring's poll list (/proc/PID/fdinfo of the io_uring fd) holds one
/// IORING_OP_RECV per silent client, beside the accept and the poll on
/// the stop signals, and none once they have gone. (An epoll server holds
/// an interest entry per client instead.) Its completion queue has room
/// for 32,768 completions, three for every one 10,000 such clients could
/// post at once.
#[test]
fn each_silent_client_is_a_recv_waiting_in_the_kernel() {
    if !available_or_skip("each_silent_client_is_a_recv_waiting_in_the_kernel") {
        return;
    }
    const SILENT: usize = 50;
    let server = Server::start(NAME, &["--quiet"]);
    let pid = server.pid();
    let of = |op: u32| {
        move || {
            process::uring_waiting(pid)
                .iter()
                .filter(|&&waiting| waiting == op)
                .count()
        }
    };
    let silent: Vec<_> = (0..SILENT).map(|_| connect(server.addr())).collect();
    let mut recvs = 0;
    let all_there = wait_until(PATIENCE, || {
        recvs = of(IORING_OP_RECV)();
        recvs == SILENT
    });
    assert!(
        all_there,
        "{recvs} recvs wait in the kernel for {SILENT} silent clients: {:?}",
        process::uring_waiting(pid)
    );
    assert_eq!(
        of(IORING_OP_ACCEPT)(),
        1,
        "{:?}",
        process::uring_waiting(pid)
    );
    assert_eq!(
        of(IORING_OP_POLL_ADD)(),
        1,
        "{:?}",
        process::uring_waiting(pid)
    );
    // Others are served meanwhile.
    assert_eq!(tests::request(server.addr(), GET), RESPONSE);

    drop(silent);
    assert!(
        wait_until(PATIENCE, || of(IORING_OP_RECV)() == 0),
        "recvs still wait after the clients left: {:?}",
        process::uring_waiting(pid)
    );
    // `CqMask: 0x7fff`: the completion queue's size, less one.
    let ring = (3..64)
        .filter_map(|fd| std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok())
        .find(|info| info.contains("CqMask:"))
        .expect("the ring's fdinfo");
    assert!(ring.contains("CqMask:\t0x7fff"), "{ring}");
}

/// One multishot accept submission takes every client: 20 clients are one
/// `submit accept-multishot` and 20 completions, each carrying a client's
/// fd and IORING_CQE_F_MORE (the accept stays armed).
#[test]
fn one_multishot_accept_takes_every_client() {
    if !available_or_skip("one_multishot_accept_takes_every_client") {
        return;
    }
    const CLIENTS: usize = 20;
    let server = Server::start(NAME, &["--quiet", "--trace"]);
    for _ in 0..CLIENTS {
        assert_eq!(tests::request(server.addr(), GET), RESPONSE);
    }
    let accepted =
        |line: &str| line.starts_with("complete accept-multishot: ") && line.ends_with(", more");
    let trace = trace_when(&server, "fewer accept completions than clients", |trace| {
        count(trace, accepted) >= CLIENTS
    });
    assert_eq!(
        count(&trace, |line| line.starts_with("submit accept")),
        1,
        "the trace:\n{trace}"
    );
    assert_eq!(count(&trace, accepted), CLIENTS, "the trace:\n{trace}");
}

/// The fallback, forced with `--no-multishot`: each client is one
/// single-shot accept submission and one completion, without `more`, and
/// every client is served. (The table of servers runs every other test on
/// this path too: `example16_io_uring --no-multishot`.)
#[test]
fn without_multishot_each_client_is_one_accept_submission() {
    if !available_or_skip("without_multishot_each_client_is_one_accept_submission") {
        return;
    }
    const CLIENTS: usize = 20;
    let server = Server::start(NAME, &["--quiet", "--trace", "--no-multishot"]);
    for _ in 0..CLIENTS {
        assert_eq!(tests::request(server.addr(), GET), RESPONSE);
    }
    // One accept for each client, and the one armed for the next.
    let submitted = |line: &str| line == "submit accept";
    let trace = trace_when(&server, "fewer accept submissions than clients", |trace| {
        count(trace, submitted) > CLIENTS
    });
    assert_eq!(count(&trace, submitted), CLIENTS + 1, "the trace:\n{trace}");
    assert_eq!(
        count(&trace, |line| line.starts_with("complete accept: ")),
        CLIENTS,
        "the trace:\n{trace}"
    );
    assert!(!trace.contains("more"), "the trace:\n{trace}");
}

/// A stop frees the connections' buffers only after the kernel has let go
/// of them: every operation in flight is cancelled, and waited for. Three
/// silent clients' recvs each complete with -ECANCELED, and so does the
/// accept, before the server exits with status 0.
#[test]
fn a_stop_cancels_every_operation_and_waits_for_it() {
    if !available_or_skip("a_stop_cancels_every_operation_and_waits_for_it") {
        return;
    }
    let mut server = Server::start(NAME, &["--quiet", "--trace"]);
    let _silent: Vec<_> = (0..3).map(|_| connect(server.addr())).collect();
    trace_when(&server, "three recvs were never submitted", |trace| {
        count(trace, |line| line.starts_with("submit recv ")) == 3
    });
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(PATIENCE)
        .unwrap_or_else(|| panic!("{NAME} still runs {PATIENCE:?} after SIGTERM"));
    assert_eq!(status.code(), Some(0), "{status}");
    let trace = trace_when(&server, "not every operation was cancelled", |trace| {
        count(trace, |line| line.ends_with(": -125 ECANCELED")) == 4
    });
    for slot in 0..3 {
        for line in [
            format!("submit cancel {slot}/1"),
            format!("complete recv {slot}/1: -125 ECANCELED"),
        ] {
            assert!(trace.lines().any(|l| l == line), "no `{line}`:\n{trace}");
        }
    }
    assert!(
        trace.contains("complete accept-multishot: -125 ECANCELED"),
        "the accept was not cancelled:\n{trace}"
    );
}

/// `--help` says what `--trace` prints here (submissions and completions,
/// not epoll events), and offers the single-shot fallback.
#[test]
fn help_says_what_trace_prints_and_offers_the_fallback() {
    let help = tests::command_line::assert_help_mentions(
        NAME,
        &["--trace", "--no-multishot", "user_data", "5.19"],
    );
    assert!(
        help.contains("submission") && help.contains("completion"),
        "{help}"
    );
}

/// Where the kernel refuses io_uring, the server says why and what to do,
/// and exits with status 1 before it listens. A seccomp filter, as a
/// container's profile would, makes io_uring_setup(2) fail with each errno
/// in turn.
#[test]
fn a_refused_ring_is_explained() {
    // What the explanation must name, for each errno.
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map_or(0, |value| value.trim().parse().unwrap_or(0));
    let eperm_cause = if disabled == 0 {
        "a seccomp filter refuses"
    } else {
        "kernel.io_uring_disabled"
    };
    let cases = [
        (libc::EPERM, eperm_cause),
        (libc::ENOSYS, "(ENOSYS)"),
        (libc::ENOMEM, "(ENOMEM"),
        (libc::EINVAL, "IORING_SETUP_CQSIZE"),
    ];
    for (errno, cause) in cases {
        let mut command = std::process::Command::new(tests::binary(NAME));
        command.args(["--addr", "127.0.0.1:0"]);
        refuse_io_uring_setup(&mut command, errno);
        let output = tests::tools::output_within(&mut command, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "errno {errno}: {stderr}");
        assert!(
            stderr.contains("io_uring is unavailable: ") && stderr.contains(cause),
            "errno {errno}: no `{cause}` in: {stderr}"
        );
        assert!(!stdout.contains("listening on"), "errno {errno}: {stdout}");
        // `-- --nocapture` shows what the server says.
        eprintln!("{stderr}");
    }
}
