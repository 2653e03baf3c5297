//! Example 9: one epoll loop watches sockets, stdin, a directory (inotify)
//! and a signalfd, and logs every event with what its fd is.

use std::io::Write;
use std::net::Shutdown;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use tests::client::PATIENCE;
use tests::piped_stdin::start_with_piped_stdin;
use tests::process::epoll_interest;
use tests::{Server, connect, wait_until};

const NAME: &str = "example09_watch_fds";

/// A fresh, empty directory under the system's temp dir, removed (with what
/// the test put in it) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("{NAME}-{label}-{}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path).unwrap_or_else(|err| panic!("mkdir {path:?}: {err}"));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a `telnet` or `nc` client types comes out on the server's stdout,
/// and the event that brought it is logged as a client's EPOLLIN.
#[test]
fn text_typed_by_a_client_appears_on_stdout() {
    let server = Server::start(NAME, &[]);
    let mut client = connect(server.addr());
    let me = client.local_addr().unwrap();
    client.write_all(b"hello from nc\r\n").unwrap();
    assert!(
        server.wait_for_stdout(PATIENCE, |out| out.contains("hello from nc\r\n")),
        "stdout: {:?}",
        server.stdout()
    );
    let event = format!("client {me}: EPOLLIN");
    assert!(
        server.wait_for_stderr(PATIENCE, |log| log.contains(&event)),
        "no `{event}` in the log:\n{}",
        server.stderr()
    );
    // The listener's event came first, named as the listener.
    let listener = format!("listener {}: EPOLLIN", server.addr());
    assert!(server.stderr().contains(&listener), "{}", server.stderr());
}

/// An orderly close by the client (FIN) arrives as EPOLLIN|EPOLLRDHUP, is
/// logged as a hang-up, and the server closes its end: no connection left,
/// no interest entry left (the Python would spin on recv() == b'').
#[test]
fn a_client_hang_up_is_logged_and_closed() {
    let server = Server::start(NAME, &[]);
    let baseline = server.idle_holdings();
    let client = connect(server.addr());
    let me = client.local_addr().unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let hung_up = format!("client {me} hung up (EPOLLRDHUP)");
    assert!(
        server.wait_for_stderr(PATIENCE, |log| log.contains(&hung_up)),
        "no `{hung_up}` in the log:\n{}",
        server.stderr()
    );
    let flags = format!("client {me}: EPOLLIN|EPOLLRDHUP");
    assert!(server.stderr().contains(&flags), "{}", server.stderr());
    drop(client);
    server.assert_back_to(baseline);
}

/// Every fd is watched for EPOLLIN (and EPOLLRDHUP), never EPOLLOUT. The
/// Python registers with no mask, which means POLLIN|POLLPRI|POLLOUT: an
/// idle connection is always writable, so its level-triggered loop never
/// sleeps.
#[test]
fn nothing_is_watched_for_epollout() {
    let dir = TempDir::new("mask");
    let server = Server::start(NAME, &["--watch", dir.0.to_str().unwrap()]);
    let client = connect(server.addr());
    let me = client.local_addr().unwrap();
    let accepted = format!("client {me}: watching");
    assert!(server.wait_for_stderr(PATIENCE, |log| log.contains(&accepted)));
    let interest = epoll_interest(server.pid());
    // The signalfd, the inotify fd, the listener and the client.
    assert_eq!(interest.len(), 4, "{interest:?}");
    const EPOLLIN: u32 = 0x1;
    const EPOLLOUT: u32 = 0x4;
    for (fd, events) in interest {
        assert_eq!(events & EPOLLOUT, 0, "fd {fd} is watched for EPOLLOUT");
        assert_ne!(events & EPOLLIN, 0, "fd {fd} is not watched for EPOLLIN");
    }
}

/// A client that aborts its connection (RST) is logged as gone.
#[test]
fn a_client_reset_is_logged_and_closed() {
    let server = Server::start(NAME, &[]);
    let baseline = server.idle_holdings();
    let client = connect(server.addr());
    let me = client.local_addr().unwrap();
    // Make sure the server has accepted it before the reset.
    let accepted = format!("client {me}: watching");
    assert!(server.wait_for_stderr(PATIENCE, |log| log.contains(&accepted)));
    tests::client::reset(client);
    let gone = format!("client {me} is gone");
    assert!(
        server.wait_for_stderr(PATIENCE, |log| log.contains(&gone)),
        "no `{gone}` in the log:\n{}",
        server.stderr()
    );
    server.assert_back_to(baseline);
}

/// A file created in the `--watch` directory is reported by inotify, through
/// the same epoll loop, with its name.
#[test]
fn creating_a_file_in_the_watched_directory_is_logged() {
    let dir = TempDir::new("inotify");
    let dir_arg = dir.0.to_str().unwrap();
    // The watch is set before the `listening on` line, which start() awaits.
    let server = Server::start(NAME, &["--watch", dir_arg]);
    std::fs::write(dir.0.join("new-file.txt"), b"x").unwrap();
    let created = "IN_CREATE \"new-file.txt\"";
    assert!(
        server.wait_for_stderr(PATIENCE, |log| log.contains(created)),
        "no `{created}` in the log:\n{}",
        server.stderr()
    );
    let event = format!("inotify {dir_arg}: EPOLLIN");
    assert!(server.stderr().contains(&event), "{}", server.stderr());
}

/// Lines typed on stdin are logged; at end of file the server stops
/// watching stdin, instead of waking up for it forever (a pipe at EOF is
/// always readable, so a level-triggered loop would spin).
#[test]
fn stdin_is_watched_until_end_of_file() {
    let (server, mut stdin) = start_with_piped_stdin(NAME, &[]);
    let stdin_watched = || epoll_interest(server.pid()).iter().any(|&(fd, _)| fd == 0);
    assert!(stdin_watched(), "fd 0 is not in the epoll interest list");

    stdin.write_all(b"typed on stdin\n").unwrap();
    let read = "read 15 bytes: \"typed on stdin\\n\"";
    assert!(
        server.wait_for_stderr(PATIENCE, |log| log.contains(read)),
        "no `{read}` in the log:\n{}",
        server.stderr()
    );

    drop(stdin);
    assert!(
        server.wait_for_stderr(PATIENCE, |log| log
            .contains("end of file: no longer watched")),
        "{}",
        server.stderr()
    );
    assert!(
        wait_until(PATIENCE, || !stdin_watched()),
        "fd 0 is still watched after EOF"
    );
    // Exactly one event for the end of file: nothing repeats it.
    let client = connect(server.addr());
    let me = client.local_addr().unwrap();
    let accepted = format!("client {me}: watching");
    assert!(server.wait_for_stderr(PATIENCE, |log| log.contains(&accepted)));
    let stdin_events = server
        .stderr()
        .lines()
        .filter(|line| line.contains(" fd 0 stdin: EPOLL"))
        .count();
    assert_eq!(stdin_events, 2, "{}", server.stderr());
}

/// Under the harness, stdin is /dev/null, which epoll refuses (EPERM): the
/// server says so and runs without it.
#[test]
fn stdin_that_epoll_refuses_is_explained_not_fatal() {
    let server = Server::start(NAME, &[]);
    assert!(
        server.wait_for_stderr(PATIENCE, |log| log.contains("stdin cannot be watched")),
        "{}",
        server.stderr()
    );
    let interest = epoll_interest(server.pid());
    assert!(interest.iter().all(|&(fd, _)| fd != 0), "{interest:?}");
}

/// SIGTERM and SIGINT arrive through the signalfd in the same loop: the
/// server logs them and exits with status 0.
#[test]
fn stop_signals_exit_0() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let dir = TempDir::new("signal");
        let mut server = Server::start(NAME, &["--watch", dir.0.to_str().unwrap()]);
        let _client = connect(server.addr());
        server.signal(signal);
        let status = server.wait_exit(PATIENCE).expect("the server did not stop");
        assert_eq!(status.code(), Some(0), "{status}");
        assert!(
            server.stderr().contains(": stopping"),
            "{}",
            server.stderr()
        );
    }
}
