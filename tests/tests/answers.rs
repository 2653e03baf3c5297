//! What every tutorial server must do with a request, good or bad: answer it
//! with the tutorial's exact bytes, and live on.
//!
//! Each check is a function taking the binary's name; the `servers!` macro
//! at the bottom turns them into one test per server, so a failure names
//! the example that broke.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;

use tests::client::PATIENCE;
use tests::{GET, RESPONSE, Server, connect, exchange, request};

/// Starts `name` quietly (these checks read responses, not the log).
fn quiet(name: &str) -> Server {
    Server::start(name, &["--quiet"])
}

fn exact_response(name: &str) {
    let server = quiet(name);
    assert_eq!(request(server.addr(), GET), RESPONSE);
}

fn ends_with_lf_lf(name: &str) {
    // `\n\n`: the end of a request typed by hand, or sent by a sloppy client.
    let server = quiet(name);
    assert_eq!(request(server.addr(), b"GET / HTTP/1.0\n\n"), RESPONSE);
}

fn ends_with_crlf_crlf(name: &str) {
    let server = quiet(name);
    assert_eq!(request(server.addr(), b"GET / HTTP/1.0\r\n\r\n"), RESPONSE);
}

fn one_byte_at_a_time(name: &str) {
    let server = quiet(name);
    let mut stream = connect(server.addr());
    // TCP_NODELAY, so each one-byte write leaves as its own segment and the
    // server really sees the request in 36 pieces.
    stream.set_nodelay(true).unwrap();
    for byte in GET {
        stream.write_all(&[*byte]).unwrap();
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    assert_eq!(response, RESPONSE);
}

fn six_kib_request(name: &str) {
    let server = quiet(name);
    assert_eq!(request(server.addr(), &big_request(6 * 1024)), RESPONSE);
}

fn complete_request_then_close(name: &str) {
    // The client sends its request and shuts its side at once: the FIN
    // arrives with the request, and a read after the request sees 0 bytes.
    // The request is complete, so it must still be answered.
    let server = quiet(name);
    let mut stream = connect(server.addr());
    stream.write_all(GET).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    assert_eq!(response, RESPONSE);
}

fn binary_garbage_is_answered_and_printed_lossily(name: &str) {
    // Bytes that are not UTF-8 (the Python's `decode()` raises on them),
    // NULs included, ended like a request: answered, and printed with
    // U+FFFD in place of what is not text.
    let server = Server::start(name, &[]);
    let mut garbage: Vec<u8> = (0..=255u8).rev().collect();
    garbage.retain(|&b| b != b'\n');
    garbage.extend_from_slice(b"\r\n\r\n");
    assert_eq!(request(server.addr(), &garbage), RESPONSE);
    assert!(
        server.wait_for_stdout(PATIENCE, |out| out.contains('\u{FFFD}')),
        "the request was not printed lossily; stdout:\n{}",
        server.stdout()
    );
}

fn prints_each_request(name: &str) {
    let server = Server::start(name, &[]);
    assert_eq!(
        request(server.addr(), b"GET /printed HTTP/1.0\r\n\r\n"),
        RESPONSE
    );
    assert!(
        server.wait_for_stdout(PATIENCE, |out| out.contains("GET /printed HTTP/1.0")),
        "the request was not printed; stdout:\n{}",
        server.stdout()
    );
}

fn garbage_then_a_request(name: &str) {
    // A client sends bytes that never end a request and leaves; the next
    // client is served as if nothing happened.
    let server = quiet(name);
    {
        let mut stream = connect(server.addr());
        stream.write_all(&[0xff, 0x00, 0xfe, b'\r', 0x80]).unwrap();
    }
    assert_eq!(request(server.addr(), GET), RESPONSE);
}

fn oversized_request_is_refused(name: &str) {
    // 64 KiB with no terminator: past the 32 KiB cap. The server answers
    // 431 and closes; the client may see the answer or, if the close
    // overtakes it (the server does not read the rest), a reset. Either
    // way the server lives on and answers the next client.
    let server = quiet(name);
    let mut stream = connect(server.addr());
    let outcome = exchange(&mut stream, &vec![b'a'; 64 * 1024]);
    match outcome {
        Ok(response) => assert!(
            response.starts_with(b"HTTP/1.0 431 "),
            "unexpected answer: {:?}",
            String::from_utf8_lossy(&response)
        ),
        Err(err) => assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "unexpected error: {err}"
        ),
    }
    assert_eq!(request(server.addr(), GET), RESPONSE);
}

fn hundred_concurrent_clients(name: &str) {
    let server = quiet(name);
    let addr = server.addr();
    let clients: Vec<_> = (0..100)
        .map(|_| thread::spawn(move || request(addr, GET)))
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), RESPONSE);
    }
}

/// A request of `size` bytes: a request line, one long header, the end.
fn big_request(size: usize) -> Vec<u8> {
    let mut bytes = b"GET / HTTP/1.0\r\nX-Filler: ".to_vec();
    bytes.resize(size - 4, b'x');
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes
}

/// One `#[test]` per check and server.
macro_rules! servers {
    ($($server:ident: [$($check:ident),* $(,)?];)*) => {$(
        mod $server {
            $(
                #[test]
                fn $check() {
                    super::$check(stringify!($server));
                }
            )*
        }
    )*};
}

servers! {
    // Example 1 answers one request and exits: one check per server.
    example01_blocking: [
        exact_response, ends_with_lf_lf, ends_with_crlf_crlf, one_byte_at_a_time,
        six_kib_request, complete_request_then_close,
        binary_garbage_is_answered_and_printed_lossily, prints_each_request,
        oversized_request_is_refused_and_exits,
    ];
    example02_loop: [
        exact_response, ends_with_lf_lf, ends_with_crlf_crlf, one_byte_at_a_time,
        six_kib_request, complete_request_then_close,
        binary_garbage_is_answered_and_printed_lossily, prints_each_request,
        garbage_then_a_request, oversized_request_is_refused, hundred_concurrent_clients,
    ];
    example03_epoll_level: [
        exact_response, ends_with_lf_lf, ends_with_crlf_crlf, one_byte_at_a_time,
        six_kib_request, complete_request_then_close,
        binary_garbage_is_answered_and_printed_lossily, prints_each_request,
        garbage_then_a_request, oversized_request_is_refused, hundred_concurrent_clients,
    ];
    example04_epoll_edge: [
        exact_response, ends_with_lf_lf, ends_with_crlf_crlf, one_byte_at_a_time,
        six_kib_request, complete_request_then_close,
        binary_garbage_is_answered_and_printed_lossily, prints_each_request,
        garbage_then_a_request, oversized_request_is_refused, hundred_concurrent_clients,
    ];
    example05_cork: [
        exact_response, ends_with_lf_lf, ends_with_crlf_crlf, one_byte_at_a_time,
        six_kib_request, complete_request_then_close,
        binary_garbage_is_answered_and_printed_lossily, prints_each_request,
        garbage_then_a_request, oversized_request_is_refused, hundred_concurrent_clients,
    ];
    example06_nodelay: [
        exact_response, ends_with_lf_lf, ends_with_crlf_crlf, one_byte_at_a_time,
        six_kib_request, complete_request_then_close,
        binary_garbage_is_answered_and_printed_lossily, prints_each_request,
        garbage_then_a_request, oversized_request_is_refused, hundred_concurrent_clients,
    ];
}

fn oversized_request_is_refused_and_exits(name: &str) {
    // Example 1 serves one client, whatever it sent, then exits with 0.
    let mut server = quiet(name);
    let mut stream = connect(server.addr());
    let _ = exchange(&mut stream, &vec![b'a'; 64 * 1024]);
    let status = server
        .wait_exit(PATIENCE)
        .expect("example 1 exits after one client");
    assert!(status.success(), "exit status {status}");
}
