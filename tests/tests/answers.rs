//! What every HTTP server must do with a request, good or bad: answer it
//! with its exact bytes, and live on.
//!
//! Each check is a function taking a row of [`tests::targets`]; the
//! `servers!` macro at the bottom turns them into one test per server and
//! check (`example07_threads::one_byte_at_a_time`), so a failure names the
//! example that broke and what it got wrong.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;

use tests::client::PATIENCE;
use tests::targets::Target;
use tests::{Server, connect, exchange, request, wait_until};

/// Starts `target` quietly (these checks read responses, not the log).
fn quiet(target: &Target) -> Server {
    target.start(&["--quiet"])
}

/// Asserts that `answer` is `target`'s response, naming the server if not.
fn assert_response(target: &Target, answer: &[u8]) {
    assert!(
        answer == target.response,
        "{} answered {:?}, not {:?}",
        target.name,
        String::from_utf8_lossy(answer),
        String::from_utf8_lossy(target.response),
    );
}

/// The first line of `target`'s request, without its end: `GET / HTTP/1.0`.
fn request_line(target: &Target) -> &'static [u8] {
    let end = target
        .request
        .windows(2)
        .position(|pair| pair == b"\r\n")
        .expect("a request line");
    &target.request[..end]
}

/// The request line of `target`'s request, then `rest`.
fn line_then(target: &Target, rest: &[u8]) -> Vec<u8> {
    [request_line(target), rest].concat()
}

fn exact_response(target: &Target) {
    let server = quiet(target);
    assert_response(target, &request(server.addr(), target.request));
}

fn ends_with_lf_lf(target: &Target) {
    // `\n\n`: the end of a request typed by hand, or sent by a sloppy client.
    let server = quiet(target);
    let answer = request(server.addr(), &line_then(target, b"\n\n"));
    assert_response(target, &answer);
}

fn ends_with_crlf_crlf(target: &Target) {
    let server = quiet(target);
    let answer = request(server.addr(), &line_then(target, b"\r\n\r\n"));
    assert_response(target, &answer);
}

fn one_byte_at_a_time(target: &Target) {
    let server = quiet(target);
    let mut stream = connect(server.addr());
    // TCP_NODELAY, so each one-byte write leaves as its own segment and the
    // server really sees the request in as many pieces as it has bytes.
    stream.set_nodelay(true).unwrap();
    for byte in target.request {
        stream.write_all(&[*byte]).unwrap();
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    assert_response(target, &response);
}

fn six_kib_request(target: &Target) {
    // A request line, one long header, the end: 6 KiB in all.
    let mut bytes = line_then(target, b"\r\nX-Filler: ");
    bytes.resize(6 * 1024 - 4, b'x');
    bytes.extend_from_slice(b"\r\n\r\n");
    let server = quiet(target);
    assert_response(target, &request(server.addr(), &bytes));
}

fn complete_request_then_close(target: &Target) {
    // The client sends its request and shuts its side at once: the FIN
    // arrives with the request, and a read after the request sees 0 bytes.
    // The request is complete, so it must still be answered.
    let server = quiet(target);
    let mut stream = connect(server.addr());
    stream.write_all(target.request).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    assert_response(target, &response);
}

fn binary_garbage_is_answered_and_printed_lossily(target: &Target) {
    // Bytes that are not UTF-8 (the Python's `decode()` raises on them),
    // NULs included, ended like a request: answered, and printed with
    // U+FFFD in place of what is not text.
    let server = target.start(&[]);
    let mut garbage: Vec<u8> = (0..=255u8).rev().collect();
    garbage.retain(|&b| b != b'\n');
    garbage.extend_from_slice(b"\r\n\r\n");
    let answer = request(server.addr(), &garbage);
    assert!(
        answer.starts_with(target.garbage_answer),
        "{} answered {:?} to garbage, expected it to begin {:?}",
        target.name,
        String::from_utf8_lossy(&answer),
        String::from_utf8_lossy(target.garbage_answer),
    );
    assert!(
        server.wait_for_stdout(PATIENCE, |out| out.contains('\u{FFFD}')),
        "the request was not printed lossily; stdout:\n{}",
        server.stdout()
    );
}

fn prints_each_request(target: &Target) {
    let server = target.start(&[]);
    assert_response(target, &request(server.addr(), target.request));
    let line = String::from_utf8_lossy(request_line(target));
    assert!(
        server.wait_for_stdout(PATIENCE, |out| out.contains(&*line)),
        "the request was not printed; stdout:\n{}",
        server.stdout()
    );
}

fn garbage_then_a_request(target: &Target) {
    // A client sends bytes that never end a request and leaves; the next
    // client is served as if nothing happened.
    let server = quiet(target);
    {
        let mut stream = connect(server.addr());
        stream.write_all(&[0xff, 0x00, 0xfe, b'\r', 0x80]).unwrap();
    }
    assert_response(target, &request(server.addr(), target.request));
}

fn oversized_request_is_refused(target: &Target) {
    // 64 KiB with no terminator: past the 32 KiB cap. The server answers
    // 431 and closes; the client may see the answer or, if the close
    // overtakes it (the server does not read the rest), a reset. Either
    // way the server lives on and answers the next client.
    let server = quiet(target);
    assert_refused_as_oversized(&server);
    assert_response(target, &request(server.addr(), target.request));
}

/// Sends 64 KiB with no terminator, past the 32 KiB cap, and asserts the
/// server answered 431 or (its close overtaking the answer, the rest
/// unread) reset the connection.
fn assert_refused_as_oversized(server: &Server) {
    let mut stream = connect(server.addr());
    match exchange(&mut stream, &vec![b'a'; 64 * 1024]) {
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
}

fn hundred_concurrent_clients(target: &Target) {
    let server = quiet(target);
    let (addr, bytes) = (server.addr(), target.request);
    let clients: Vec<_> = (0..100)
        .map(|_| thread::spawn(move || request(addr, bytes)))
        .collect();
    for client in clients {
        assert_response(target, &client.join().unwrap());
    }
}

fn oversized_request_is_refused_and_exits(target: &Target) {
    // Example 1 serves one client, whatever it sent, then exits with 0.
    let mut server = quiet(target);
    assert_refused_as_oversized(&server);
    let status = server
        .wait_exit(PATIENCE)
        .expect("example 1 exits after one client");
    assert!(status.success(), "exit status {status}");
}

/// A client that says nothing holds no one up: one thread, many clients.
/// (Examples 3 to 6 have this in `lessons.rs`, the lesson of step 3;
/// example 7, with its thread count, in `threads.rs`.)
fn a_silent_client_does_not_stall_the_others(target: &Target) {
    let server = quiet(target);
    let _silent = connect(server.addr());
    assert!(wait_until(PATIENCE, || server.connections() == 1));
    assert_response(target, &request(server.addr(), target.request));
}

// ---------------------------------------------------------------------------
// Which server runs which checks.

/// One `#[test]` per check, each running it on `$target`, a row of
/// [`tests::targets`].
macro_rules! checks {
    ($target:ident: $($check:ident),* $(,)?) => {$(
        #[test]
        fn $check() {
            super::$check(&tests::targets::$target);
        }
    )*};
}

/// What every HTTP server does with one request, however it comes.
macro_rules! one_request {
    ($target:ident) => {
        checks!($target: exact_response, ends_with_lf_lf, ends_with_crlf_crlf,
            one_byte_at_a_time, six_kib_request, complete_request_then_close,
            binary_garbage_is_answered_and_printed_lossily, prints_each_request);
    };
}

/// What every server that answers request after request does (all but
/// example 1): bad clients do not stop it, and many clients get their
/// answers.
macro_rules! lives_on {
    ($target:ident) => {
        checks!($target: garbage_then_a_request, oversized_request_is_refused,
            hundred_concurrent_clients);
    };
}

/// Example 1 answers one client and exits.
macro_rules! exits_after_one {
    ($target:ident) => {
        checks!($target: oversized_request_is_refused_and_exits);
    };
}

/// Serves one client while another says nothing.
macro_rules! beside_a_silent_client {
    ($target:ident) => {
        checks!($target: a_silent_client_does_not_stall_the_others);
    };
}

/// A module of tests per server, named after it, with the groups of checks
/// that apply to it.
macro_rules! servers {
    ($($module:ident = $target:ident: [$($group:ident),* $(,)?];)*) => {$(
        mod $module {
            $($group!($target);)*
        }
    )*};
}

servers! {
    example01_blocking = EXAMPLE01: [one_request, exits_after_one];
    example02_loop = EXAMPLE02: [one_request, lives_on];
    example03_epoll_level = EXAMPLE03: [one_request, lives_on];
    example04_epoll_edge = EXAMPLE04: [one_request, lives_on];
    example05_cork = EXAMPLE05: [one_request, lives_on];
    example06_nodelay = EXAMPLE06: [one_request, lives_on];
    example07_threads = EXAMPLE07: [one_request, lives_on];
    example08_select = EXAMPLE08_SELECT: [one_request, lives_on, beside_a_silent_client];
    example08_poll = EXAMPLE08_POLL: [one_request, lives_on, beside_a_silent_client];
    example10_event_loop = EXAMPLE10: [one_request, lives_on, beside_a_silent_client];
    example13_many_cores = EXAMPLE13: [one_request, lives_on, beside_a_silent_client];
    example13_exclusive = EXAMPLE13_EXCLUSIVE: [one_request, lives_on, beside_a_silent_client];
}
