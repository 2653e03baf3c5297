//! What every HTTP server must do with a request, good or bad: answer it
//! with its exact bytes, and live on.
//!
//! Each check is one function, and above it a table of the servers it runs
//! on, a `#[test_case]` row each: the test
//! `one_byte_at_a_time::test_case_5_example05_cork` is the fifth row,
//! `"example05_cork"`, of `fn one_byte_at_a_time`. A failure names the check
//! and the server, and grep finds both. (`cargo test -p tests --test answers
//! example05` runs every check on example 5; `one_byte_at_a_time`, one check
//! on every server.)
//!
//! Which servers run which checks:
//! - every HTTP server (example 1 and `targets::SERVERS`): the checks of one
//!   request, however it comes, from `exact_response` to `prints_each_request`;
//! - every server that answers request after request (`targets::SERVERS`):
//!   `garbage_then_a_request`, `oversized_request_is_refused`,
//!   `hundred_concurrent_clients`;
//! - example 1, which answers one client and exits:
//!   `oversized_request_is_refused_and_exits`;
//! - the servers whose lesson tests do not already show it:
//!   `a_silent_client_does_not_stall_the_others`.
//!
//! **Adding a server**: its row in `tests/src/targets.rs`, then here a row
//! `#[test_case(&NEW ; "new_name")]` under each check of the groups it
//! belongs to, labelled after its constant (the label starts with the
//! constant's name in lower case). `every_server_has_a_row_under_each_check`,
//! at the bottom, fails until every server of `targets.rs` has its rows.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;

use test_case::test_case;
use tests::client::PATIENCE;
use tests::client::send_then_read_answer;
use tests::targets::{
    EXAMPLE01, EXAMPLE02, EXAMPLE03, EXAMPLE04, EXAMPLE05, EXAMPLE06, EXAMPLE07, EXAMPLE08_POLL,
    EXAMPLE08_SELECT, EXAMPLE10, SERVERS, Target, every_server,
};
use tests::{Server, connect, request, wait_until};

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

/// The request, sent in one piece, gets the exact response.
#[test_case(&EXAMPLE01 ; "example01_blocking")]
#[test_case(&EXAMPLE02 ; "example02_loop")]
#[test_case(&EXAMPLE03 ; "example03_epoll_level")]
#[test_case(&EXAMPLE04 ; "example04_epoll_edge")]
#[test_case(&EXAMPLE05 ; "example05_cork")]
#[test_case(&EXAMPLE06 ; "example06_nodelay")]
#[test_case(&EXAMPLE07 ; "example07_threads")]
#[test_case(&EXAMPLE08_SELECT ; "example08_select")]
#[test_case(&EXAMPLE08_POLL ; "example08_poll")]
#[test_case(&EXAMPLE10 ; "example10_event_loop")]
fn exact_response(target: &Target) {
    let server = quiet(target);
    assert_response(target, &request(server.addr(), target.request));
}

/// A request ended by `\n\n` (typed by hand, or a sloppy client) is
/// answered.
#[test_case(&EXAMPLE01 ; "example01_blocking")]
#[test_case(&EXAMPLE02 ; "example02_loop")]
#[test_case(&EXAMPLE03 ; "example03_epoll_level")]
#[test_case(&EXAMPLE04 ; "example04_epoll_edge")]
#[test_case(&EXAMPLE05 ; "example05_cork")]
#[test_case(&EXAMPLE06 ; "example06_nodelay")]
#[test_case(&EXAMPLE07 ; "example07_threads")]
#[test_case(&EXAMPLE08_SELECT ; "example08_select")]
#[test_case(&EXAMPLE08_POLL ; "example08_poll")]
#[test_case(&EXAMPLE10 ; "example10_event_loop")]
fn ends_with_lf_lf(target: &Target) {
    // `\n\n`: the end of a request typed by hand, or sent by a sloppy client.
    let server = quiet(target);
    let answer = request(server.addr(), &line_then(target, b"\n\n"));
    assert_response(target, &answer);
}

/// A request line ended at once by `\r\n\r\n`, no headers, is answered.
#[test_case(&EXAMPLE01 ; "example01_blocking")]
#[test_case(&EXAMPLE02 ; "example02_loop")]
#[test_case(&EXAMPLE03 ; "example03_epoll_level")]
#[test_case(&EXAMPLE04 ; "example04_epoll_edge")]
#[test_case(&EXAMPLE05 ; "example05_cork")]
#[test_case(&EXAMPLE06 ; "example06_nodelay")]
#[test_case(&EXAMPLE07 ; "example07_threads")]
#[test_case(&EXAMPLE08_SELECT ; "example08_select")]
#[test_case(&EXAMPLE08_POLL ; "example08_poll")]
#[test_case(&EXAMPLE10 ; "example10_event_loop")]
fn ends_with_crlf_crlf(target: &Target) {
    let server = quiet(target);
    let answer = request(server.addr(), &line_then(target, b"\r\n\r\n"));
    assert_response(target, &answer);
}

/// A request that arrives one byte per segment is put together and
/// answered: the server never takes a piece for the whole.
#[test_case(&EXAMPLE01 ; "example01_blocking")]
#[test_case(&EXAMPLE02 ; "example02_loop")]
#[test_case(&EXAMPLE03 ; "example03_epoll_level")]
#[test_case(&EXAMPLE04 ; "example04_epoll_edge")]
#[test_case(&EXAMPLE05 ; "example05_cork")]
#[test_case(&EXAMPLE06 ; "example06_nodelay")]
#[test_case(&EXAMPLE07 ; "example07_threads")]
#[test_case(&EXAMPLE08_SELECT ; "example08_select")]
#[test_case(&EXAMPLE08_POLL ; "example08_poll")]
#[test_case(&EXAMPLE10 ; "example10_event_loop")]
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

/// A 6 KiB request, more than one read of the tutorial's 1024 bytes, is
/// answered once, whole.
#[test_case(&EXAMPLE01 ; "example01_blocking")]
#[test_case(&EXAMPLE02 ; "example02_loop")]
#[test_case(&EXAMPLE03 ; "example03_epoll_level")]
#[test_case(&EXAMPLE04 ; "example04_epoll_edge")]
#[test_case(&EXAMPLE05 ; "example05_cork")]
#[test_case(&EXAMPLE06 ; "example06_nodelay")]
#[test_case(&EXAMPLE07 ; "example07_threads")]
#[test_case(&EXAMPLE08_SELECT ; "example08_select")]
#[test_case(&EXAMPLE08_POLL ; "example08_poll")]
#[test_case(&EXAMPLE10 ; "example10_event_loop")]
fn six_kib_request(target: &Target) {
    // A request line, one long header, the end: 6 KiB in all.
    let mut bytes = line_then(target, b"\r\nX-Filler: ");
    bytes.resize(6 * 1024 - 4, b'x');
    bytes.extend_from_slice(b"\r\n\r\n");
    let server = quiet(target);
    assert_response(target, &request(server.addr(), &bytes));
}

/// A request whose FIN comes with it is still answered: the read of 0
/// bytes after a complete request is not a client that left.
#[test_case(&EXAMPLE01 ; "example01_blocking")]
#[test_case(&EXAMPLE02 ; "example02_loop")]
#[test_case(&EXAMPLE03 ; "example03_epoll_level")]
#[test_case(&EXAMPLE04 ; "example04_epoll_edge")]
#[test_case(&EXAMPLE05 ; "example05_cork")]
#[test_case(&EXAMPLE06 ; "example06_nodelay")]
#[test_case(&EXAMPLE07 ; "example07_threads")]
#[test_case(&EXAMPLE08_SELECT ; "example08_select")]
#[test_case(&EXAMPLE08_POLL ; "example08_poll")]
#[test_case(&EXAMPLE10 ; "example10_event_loop")]
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

/// Bytes that are not UTF-8, ended like a request, get an answer and are
/// printed with U+FFFD, where the Python original raised.
#[test_case(&EXAMPLE01 ; "example01_blocking")]
#[test_case(&EXAMPLE02 ; "example02_loop")]
#[test_case(&EXAMPLE03 ; "example03_epoll_level")]
#[test_case(&EXAMPLE04 ; "example04_epoll_edge")]
#[test_case(&EXAMPLE05 ; "example05_cork")]
#[test_case(&EXAMPLE06 ; "example06_nodelay")]
#[test_case(&EXAMPLE07 ; "example07_threads")]
#[test_case(&EXAMPLE08_SELECT ; "example08_select")]
#[test_case(&EXAMPLE08_POLL ; "example08_poll")]
#[test_case(&EXAMPLE10 ; "example10_event_loop")]
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

/// The request line is printed on stdout.
#[test_case(&EXAMPLE01 ; "example01_blocking")]
#[test_case(&EXAMPLE02 ; "example02_loop")]
#[test_case(&EXAMPLE03 ; "example03_epoll_level")]
#[test_case(&EXAMPLE04 ; "example04_epoll_edge")]
#[test_case(&EXAMPLE05 ; "example05_cork")]
#[test_case(&EXAMPLE06 ; "example06_nodelay")]
#[test_case(&EXAMPLE07 ; "example07_threads")]
#[test_case(&EXAMPLE08_SELECT ; "example08_select")]
#[test_case(&EXAMPLE08_POLL ; "example08_poll")]
#[test_case(&EXAMPLE10 ; "example10_event_loop")]
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

/// A client that sends garbage and leaves does not stop the next one
/// being served.
#[test_case(&EXAMPLE02 ; "example02_loop")]
#[test_case(&EXAMPLE03 ; "example03_epoll_level")]
#[test_case(&EXAMPLE04 ; "example04_epoll_edge")]
#[test_case(&EXAMPLE05 ; "example05_cork")]
#[test_case(&EXAMPLE06 ; "example06_nodelay")]
#[test_case(&EXAMPLE07 ; "example07_threads")]
#[test_case(&EXAMPLE08_SELECT ; "example08_select")]
#[test_case(&EXAMPLE08_POLL ; "example08_poll")]
#[test_case(&EXAMPLE10 ; "example10_event_loop")]
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

/// A request past the 32 KiB cap is refused with 431, and the server
/// serves the next client.
#[test_case(&EXAMPLE02 ; "example02_loop")]
#[test_case(&EXAMPLE03 ; "example03_epoll_level")]
#[test_case(&EXAMPLE04 ; "example04_epoll_edge")]
#[test_case(&EXAMPLE05 ; "example05_cork")]
#[test_case(&EXAMPLE06 ; "example06_nodelay")]
#[test_case(&EXAMPLE07 ; "example07_threads")]
#[test_case(&EXAMPLE08_SELECT ; "example08_select")]
#[test_case(&EXAMPLE08_POLL ; "example08_poll")]
#[test_case(&EXAMPLE10 ; "example10_event_loop")]
fn oversized_request_is_refused(target: &Target) {
    let server = quiet(target);
    assert_refused_as_oversized(&server);
    assert_response(target, &request(server.addr(), target.request));
}

/// Sends 64 KiB with no terminator, past the 32 KiB cap, and asserts the
/// server answered 431. (The server closes with the rest of the 64 KiB
/// unread, which may reset the connection while we still send: the
/// answer is read all the same, see `send_then_read_answer`.)
fn assert_refused_as_oversized(server: &Server) {
    let answer = send_then_read_answer(&mut connect(server.addr()), &vec![b'a'; 64 * 1024]);
    assert!(
        answer.starts_with(b"HTTP/1.0 431 "),
        "unexpected answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
}

/// A hundred clients at once each get the exact response.
#[test_case(&EXAMPLE02 ; "example02_loop")]
#[test_case(&EXAMPLE03 ; "example03_epoll_level")]
#[test_case(&EXAMPLE04 ; "example04_epoll_edge")]
#[test_case(&EXAMPLE05 ; "example05_cork")]
#[test_case(&EXAMPLE06 ; "example06_nodelay")]
#[test_case(&EXAMPLE07 ; "example07_threads")]
#[test_case(&EXAMPLE08_SELECT ; "example08_select")]
#[test_case(&EXAMPLE08_POLL ; "example08_poll")]
#[test_case(&EXAMPLE10 ; "example10_event_loop")]
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

/// Example 1 refuses an oversized request like the others, then exits
/// with 0, its one client served.
#[test_case(&EXAMPLE01 ; "example01_blocking")]
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
#[test_case(&EXAMPLE08_SELECT ; "example08_select")]
#[test_case(&EXAMPLE08_POLL ; "example08_poll")]
#[test_case(&EXAMPLE10 ; "example10_event_loop")]
fn a_silent_client_does_not_stall_the_others(target: &Target) {
    let server = quiet(target);
    let _silent = connect(server.addr());
    assert!(wait_until(PATIENCE, || server.connections() == 1));
    assert_response(target, &request(server.addr(), target.request));
}

// ---------------------------------------------------------------------------
// The tables above cover every server.

/// The checks whose tables must list every HTTP server.
const CHECKS_OF_ONE_REQUEST: &[&str] = &[
    "exact_response",
    "ends_with_lf_lf",
    "ends_with_crlf_crlf",
    "one_byte_at_a_time",
    "six_kib_request",
    "complete_request_then_close",
    "binary_garbage_is_answered_and_printed_lossily",
    "prints_each_request",
];

/// The checks whose tables must list every server that lives on.
const CHECKS_OF_LIVING_ON: &[&str] = &[
    "garbage_then_a_request",
    "oversized_request_is_refused",
    "hundred_concurrent_clients",
];

/// The `#[test_case(&CONSTANT ; "label")]` rows of each function of this
/// file, by function name.
fn tables() -> BTreeMap<&'static str, Vec<(&'static str, &'static str)>> {
    let mut tables = BTreeMap::new();
    let mut rows = Vec::new();
    for line in include_str!("answers.rs").lines() {
        if let Some(row) = line.strip_prefix("#[test_case(&") {
            let (constant, label) = row.split_once(" ; ").expect("`&CONSTANT ; \"label\"`");
            rows.push((constant, label.trim_end_matches(")]").trim_matches('"')));
        } else if let Some(function) = line.strip_prefix("fn ") {
            let name = function.split('(').next().unwrap();
            tables.insert(name, std::mem::take(&mut rows));
        }
    }
    tables
}

/// A server added to `tests/src/targets.rs` is not silently left out here:
/// each check's table has one row per server of its group, no server twice,
/// each row labelled after its constant.
#[test]
fn every_server_has_a_row_under_each_check() {
    let tables = tables();
    let groups = [
        (CHECKS_OF_ONE_REQUEST, every_server().count()),
        (CHECKS_OF_LIVING_ON, SERVERS.len()),
    ];
    for (checks, servers) in groups {
        for check in checks {
            let rows = &tables[check];
            assert_eq!(rows.len(), servers, "{check}: {rows:?}");
            let constants: BTreeSet<_> = rows.iter().map(|row| row.0).collect();
            let labels: BTreeSet<_> = rows.iter().map(|row| row.1).collect();
            assert_eq!(
                constants.len(),
                servers,
                "{check}: a server twice: {rows:?}"
            );
            assert_eq!(labels.len(), servers, "{check}: a label twice: {rows:?}");
        }
    }
    for (check, rows) in &tables {
        for (constant, label) in rows {
            assert!(
                label.starts_with(&constant.to_lowercase()),
                "{check}: row {label:?} is not named after {constant}"
            );
        }
    }
}
