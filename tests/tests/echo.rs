//! Example 0, the echo server: every byte comes back, in order, whatever the
//! reads and writes looked like; and one client is served at a time.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use tests::client::PATIENCE;
use tests::command_line::assert_help_mentions;
use tests::{Server, connect, tcp_info, wait_until};

const ECHO: &str = "example00_echo";

fn quiet() -> Server {
    Server::start(ECHO, &["--quiet"])
}

/// Sends `bytes` from one thread while this one reads, then closes the
/// sending side; returns everything read until the server closed.
fn echo_concurrently(stream: TcpStream, bytes: Vec<u8>, chunk: usize) -> Vec<u8> {
    let mut sender = stream.try_clone().unwrap();
    let writer = thread::spawn(move || {
        for piece in bytes.chunks(chunk) {
            sender.write_all(piece).unwrap();
        }
        // FIN: the server's read returns 0, it stops echoing and closes.
        sender.shutdown(Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::new();
    let mut reader = stream;
    reader.read_to_end(&mut echoed).unwrap();
    writer.join().unwrap();
    echoed
}

/// Reads exactly `len` bytes, or fails the test after PATIENCE.
fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    stream.read_exact(&mut bytes).unwrap();
    bytes
}

/// Eight MiB of random bytes, sent in odd-sized writes while another thread
/// reads, come back identical. The server reads at most 1024 bytes at a
/// time and the kernel cuts the stream as it likes: none of that shows,
/// because TCP delivers bytes, and only bytes, in order.
#[test]
fn mebibytes_of_random_bytes_come_back_identical() {
    let server = quiet();
    let sent = tests::client::random_bytes(8 * 1024 * 1024);
    // 7919 bytes per write: no multiple of the server's 1024-byte reads.
    let echoed = echo_concurrently(connect(server.addr()), sent.clone(), 7919);
    assert_eq!(echoed.len(), sent.len(), "bytes lost or added");
    assert!(echoed == sent, "the echo differs from what was sent");
}

/// The second client is queued, not served: its bytes reach the server's
/// kernel (they are acknowledged) but no echo comes until the first client
/// has gone.
#[test]
fn a_second_client_waits_for_the_first() {
    let server = quiet();
    let mut first = connect(server.addr());
    first.write_all(b"first").unwrap();
    // Its echo proves the server has accepted the first client and sits in
    // its read loop.
    assert_eq!(read_exactly(&mut first, 5), b"first");

    let mut second = connect(server.addr());
    second.write_all(b"second").unwrap();
    // The kernel completed the handshake and acknowledged the bytes (no
    // byte is left unacknowledged): they are in the server's receive
    // queue. Only the program has not read them.
    assert!(
        wait_until(PATIENCE, || tcp_info(&second).tcpi_unacked == 0),
        "the second client's bytes were never acknowledged"
    );
    second
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut byte = [0u8; 1];
    match second.read(&mut byte) {
        Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the second client got {other:?} while the first was connected"),
    }
    // The first client is still being served.
    first.write_all(b"again").unwrap();
    assert_eq!(read_exactly(&mut first, 5), b"again");

    // The first client leaves: now the server reads the second's bytes.
    drop(first);
    second.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(read_exactly(&mut second, 6), b"second");
}

/// An HTTP request is just bytes here: it comes back exactly, not answered.
#[test]
fn exact_bytes_come_back() {
    let server = quiet();
    let request = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    let echoed = echo_concurrently(connect(server.addr()), request.to_vec(), 1024);
    assert_eq!(echoed, request);
}

/// One byte per write (TCP_NODELAY, so one segment each): the same bytes,
/// in the same order.
#[test]
fn one_byte_at_a_time() {
    let server = quiet();
    let stream = connect(server.addr());
    stream.set_nodelay(true).unwrap();
    let sent = b"one byte at a time".to_vec();
    assert_eq!(echo_concurrently(stream, sent.clone(), 1), sent);
}

/// Bytes that are not text (every byte value, NULs included) are echoed
/// as they are, and the next client is served normally.
#[test]
fn garbage_then_a_normal_client() {
    let server = quiet();
    let garbage: Vec<u8> = (0..=255u8).rev().collect();
    assert_eq!(
        echo_concurrently(connect(server.addr()), garbage.clone(), 1024),
        garbage
    );
    let normal = b"hello\n".to_vec();
    assert_eq!(
        echo_concurrently(connect(server.addr()), normal.clone(), 1024),
        normal
    );
}

/// Without --quiet, each client is announced, as the article's `Connected
/// by` line does.
#[test]
fn prints_each_client() {
    let server = Server::start(ECHO, &[]);
    let stream = connect(server.addr());
    let port = stream.local_addr().unwrap().port();
    assert_eq!(echo_concurrently(stream, b"hi".to_vec(), 2), b"hi");
    let line = format!("connected by 127.0.0.1:{port}");
    assert!(
        server.wait_for_stdout(PATIENCE, |out| out.contains(&line)
            && out.contains("closed after 2 bytes")),
        "stdout:\n{}",
        server.stdout()
    );
}

/// SIGTERM stops the server with status 0, even in the middle of a client.
#[test]
fn sigterm_exits_0() {
    let mut server = quiet();
    let mut client = connect(server.addr());
    client.write_all(b"x").unwrap();
    assert_eq!(read_exactly(&mut client, 1), b"x");
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(PATIENCE).expect("the server did not stop");
    assert_eq!(status.code(), Some(0), "{status}");
}

/// `--help` names the options, the default address, and how to stop it.
#[test]
fn help_describes_the_options() {
    assert_help_mentions(
        ECHO,
        &["--addr", "--quiet", "127.0.0.1:8080", "echo", "SIGTERM"],
    );
}
