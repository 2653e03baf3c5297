//! What every HTTP server must do with a request, good or bad: answer it
//! with its exact bytes, and live on.
//!
//! Each check is one function, with `#[rstest]` rows above it, one test a
//! row: `#[apply(every_server_that_lives_on)]` gives it the rows of that
//! table (rstest_reuse), and `#[case::example01_blocking(&EXAMPLE01)]` adds
//! example 1 to the checks of one request. The test
//! `one_byte_at_a_time::case_04_example05_cork` is the check
//! `fn one_byte_at_a_time` on the row `#[case::example05_cork(..)]`: a
//! failure names both, and grep finds both. (`cargo test -p tests --test
//! answers example05` runs every check on example 5; `one_byte_at_a_time`,
//! one check on every server.)
//!
//! **Adding a server** that answers request after request: its constant in
//! `tests/src/targets.rs` and its row in `SERVERS` there; then here one row
//! `#[case::name(&CONSTANT)]` in `every_server_that_lives_on` (and in
//! `servers_without_a_silent_client_lesson` unless a lesson test shows
//! it), labelled after its constant. The test
//! `every_server_has_its_row_in_each_table` fails until the table has a
//! row for every server of `SERVERS`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

use rstest::rstest;
use rstest_reuse::{apply, template};
use tests::client::{PATIENCE, send_then_read_answer};
use tests::targets::{
    EXAMPLE01, EXAMPLE02, EXAMPLE03, EXAMPLE04, EXAMPLE05, EXAMPLE06, EXAMPLE07, EXAMPLE08_POLL,
    EXAMPLE08_SELECT, EXAMPLE10, EXAMPLE11, EXAMPLE13, EXAMPLE13_EXCLUSIVE, EXAMPLE14, EXAMPLE15,
    EXAMPLE15_MULTI_THREAD, EXAMPLE16, EXAMPLE16_SINGLE_SHOT, SERVERS, Target,
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

/// Reads `stream` to the server's close and asserts that what came is
/// `target`'s response.
fn assert_response_on(target: &Target, mut stream: TcpStream) {
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    assert_response(target, &response);
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

// ---------------------------------------------------------------------------
// Which servers run which checks: a table a group, each row a server.
// `#[apply(TABLE)]` above a check makes one test a row of it; a
// `#[case::...]` row below the `apply` adds a server to that check alone
// (example 1, which answers one client and exits, to the checks of one
// request).

/// Every server that answers request after request: `targets::SERVERS`,
/// all but example 1.
#[template]
#[rstest]
#[case::example02_loop(&EXAMPLE02)]
#[case::example03_epoll_level(&EXAMPLE03)]
#[case::example04_epoll_edge(&EXAMPLE04)]
#[case::example05_cork(&EXAMPLE05)]
#[case::example06_nodelay(&EXAMPLE06)]
#[case::example07_threads(&EXAMPLE07)]
#[case::example08_select(&EXAMPLE08_SELECT)]
#[case::example08_poll(&EXAMPLE08_POLL)]
#[case::example10_event_loop(&EXAMPLE10)]
#[case::example11_timeouts(&EXAMPLE11)]
#[case::example13_many_cores(&EXAMPLE13)]
#[case::example13_exclusive(&EXAMPLE13_EXCLUSIVE)]
#[case::example14_mio(&EXAMPLE14)]
#[case::example15_tokio(&EXAMPLE15)]
#[case::example15_multi_thread(&EXAMPLE15_MULTI_THREAD)]
#[case::example16_io_uring(&EXAMPLE16)]
#[case::example16_single_shot(&EXAMPLE16_SINGLE_SHOT)]
fn every_server_that_lives_on(#[case] target: &Target) {}

/// The servers whose lesson tests do not already show that a silent client
/// holds no one up (examples 3 to 6 have it in `lessons.rs`, example 7 in
/// `threads.rs`).
#[template]
#[rstest]
#[case::example08_select(&EXAMPLE08_SELECT)]
#[case::example08_poll(&EXAMPLE08_POLL)]
#[case::example10_event_loop(&EXAMPLE10)]
#[case::example11_timeouts(&EXAMPLE11)]
#[case::example13_many_cores(&EXAMPLE13)]
#[case::example13_exclusive(&EXAMPLE13_EXCLUSIVE)]
#[case::example14_mio(&EXAMPLE14)]
#[case::example15_tokio(&EXAMPLE15)]
#[case::example15_multi_thread(&EXAMPLE15_MULTI_THREAD)]
#[case::example16_io_uring(&EXAMPLE16)]
#[case::example16_single_shot(&EXAMPLE16_SINGLE_SHOT)]
fn servers_without_a_silent_client_lesson(#[case] target: &Target) {}

// ---------------------------------------------------------------------------
// The checks.

/// Starts `target` quietly, sends it `bytes` on one connection, and
/// asserts that it answers with its response.
fn assert_answers_to(target: &Target, bytes: &[u8]) {
    let server = quiet(target);
    assert_response(target, &request(server.addr(), bytes));
}

/// The request, sent in one piece, gets the exact response.
#[apply(every_server_that_lives_on)]
#[case::example01_blocking(&EXAMPLE01)]
fn exact_response(#[case] target: &Target) {
    if !target.runs_here() {
        return;
    }
    assert_answers_to(target, target.request);
}

/// A request ended by `\n\n` (typed by hand, or a sloppy client) is
/// answered.
#[apply(every_server_that_lives_on)]
#[case::example01_blocking(&EXAMPLE01)]
fn ends_with_lf_lf(#[case] target: &Target) {
    if !target.runs_here() {
        return;
    }
    assert_answers_to(target, &line_then(target, b"\n\n"));
}

/// A request line ended at once by `\r\n\r\n`, no headers, is answered.
#[apply(every_server_that_lives_on)]
#[case::example01_blocking(&EXAMPLE01)]
fn ends_with_crlf_crlf(#[case] target: &Target) {
    if !target.runs_here() {
        return;
    }
    assert_answers_to(target, &line_then(target, b"\r\n\r\n"));
}

/// A request that arrives one byte per segment is put together and
/// answered: the server never takes a piece for the whole.
#[apply(every_server_that_lives_on)]
#[case::example01_blocking(&EXAMPLE01)]
fn one_byte_at_a_time(#[case] target: &Target) {
    if !target.runs_here() {
        return;
    }
    let server = quiet(target);
    let mut stream = connect(server.addr());
    // TCP_NODELAY, so each one-byte write leaves as its own segment and the
    // server really sees the request in as many pieces as it has bytes.
    stream.set_nodelay(true).unwrap();
    for byte in target.request {
        stream.write_all(&[*byte]).unwrap();
    }
    assert_response_on(target, stream);
}

/// A 6 KiB request, more than one read of the tutorial's 1024 bytes, is
/// answered once, whole.
#[apply(every_server_that_lives_on)]
#[case::example01_blocking(&EXAMPLE01)]
fn six_kib_request(#[case] target: &Target) {
    if !target.runs_here() {
        return;
    }
    // A request line, one long header, the end: 6 KiB in all.
    let mut bytes = line_then(target, b"\r\nX-Filler: ");
    bytes.resize(6 * 1024 - 4, b'x');
    bytes.extend_from_slice(b"\r\n\r\n");
    assert_answers_to(target, &bytes);
}

/// A request whose FIN comes with it is still answered: the read of 0
/// bytes after a complete request is not a client that left.
#[apply(every_server_that_lives_on)]
#[case::example01_blocking(&EXAMPLE01)]
fn complete_request_then_close(#[case] target: &Target) {
    if !target.runs_here() {
        return;
    }
    // The client sends its request and shuts its side at once: the FIN
    // arrives with the request, and a read after the request sees 0 bytes.
    // The request is complete, so it must still be answered.
    let server = quiet(target);
    let mut stream = connect(server.addr());
    stream.write_all(target.request).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_response_on(target, stream);
}

/// Bytes that are not UTF-8, ended like a request, get an answer and are
/// printed with U+FFFD, where the Python original raised.
#[apply(every_server_that_lives_on)]
#[case::example01_blocking(&EXAMPLE01)]
fn binary_garbage_is_answered_and_printed_lossily(#[case] target: &Target) {
    if !target.runs_here() {
        return;
    }
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
#[apply(every_server_that_lives_on)]
#[case::example01_blocking(&EXAMPLE01)]
fn prints_each_request(#[case] target: &Target) {
    if !target.runs_here() {
        return;
    }
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
#[apply(every_server_that_lives_on)]
fn garbage_then_a_request(#[case] target: &Target) {
    if !target.runs_here() {
        return;
    }
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
#[apply(every_server_that_lives_on)]
fn oversized_request_is_refused(#[case] target: &Target) {
    if !target.runs_here() {
        return;
    }
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
#[apply(every_server_that_lives_on)]
fn hundred_concurrent_clients(#[case] target: &Target) {
    if !target.runs_here() {
        return;
    }
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
#[rstest]
#[case::example01_blocking(&EXAMPLE01)]
fn oversized_request_is_refused_and_exits(#[case] target: &Target) {
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
#[apply(servers_without_a_silent_client_lesson)]
fn a_silent_client_does_not_stall_the_others(#[case] target: &Target) {
    if !target.runs_here() {
        return;
    }
    let server = quiet(target);
    let _silent = connect(server.addr());
    assert!(wait_until(PATIENCE, || server.connections() == 1));
    assert_response(target, &request(server.addr(), target.request));
}

// ---------------------------------------------------------------------------
// The tables cover every server.

/// The `#[case::label(&CONSTANT)]` rows of each function of this file
/// (the tables, and the rows added to a check), by function name.
fn tables() -> BTreeMap<&'static str, Vec<(&'static str, &'static str)>> {
    let mut tables = BTreeMap::new();
    let mut rows = Vec::new();
    for line in include_str!("answers.rs").lines() {
        if let Some(row) = line.strip_prefix("#[case::") {
            let (label, constant) = row.split_once("(&").expect("`#[case::label(&CONSTANT)]`");
            rows.push((constant.trim_end_matches(")]"), label));
        } else if let Some(function) = line.strip_prefix("fn ") {
            let name = function.split('(').next().unwrap();
            tables.insert(name, std::mem::take(&mut rows));
        }
    }
    tables
}

/// A server added to `tests/src/targets.rs` is not silently left out here:
/// the table of every server that lives on has a row for each of
/// `SERVERS`, none twice, and every row of the file is labelled after its
/// constant.
#[test]
fn every_server_has_its_row_in_each_table() {
    let tables = tables();
    let rows = &tables["every_server_that_lives_on"];
    let constants: BTreeSet<_> = rows.iter().map(|row| row.0).collect();
    let labels: BTreeSet<_> = rows.iter().map(|row| row.1).collect();
    assert_eq!(rows.len(), SERVERS.len(), "{rows:?}");
    assert_eq!(constants.len(), SERVERS.len(), "a server twice: {rows:?}");
    assert_eq!(labels.len(), SERVERS.len(), "a label twice: {rows:?}");
    for (function, rows) in &tables {
        for (constant, label) in rows {
            assert!(
                label.starts_with(&constant.to_lowercase()),
                "{function}: row {label:?} is not named after {constant}"
            );
        }
    }
}
