//! What the servers print.
//!
//! Printing uses `write!` and ignores errors instead of `println!`, which
//! panics when stdout is a pipe nobody reads any more ("Broken pipe"): a
//! server must not die because its log went away.

use std::io::{self, Write};

use crate::request::RequestBuffer;

/// The separator the HOWTO prints above each request.
const SEPARATOR: &str = "----------------------------------------";

/// Prints a request like the tutorial: a line of dashes, then the request.
pub fn print_request(request: &RequestBuffer) {
    // One write for the whole entry, so entries from one process never
    // interleave and a request costs one system call to print.
    let entry = format!("{SEPARATOR}\n{}\n", request.text());
    let _ = io::stdout().lock().write_all(entry.as_bytes());
}

/// Prints one epoll event to stderr for `--trace`: `fd 5: EPOLLIN|EPOLLRDHUP`.
pub fn trace_event(fd: u64, events: u32) {
    let line = format!("fd {fd}: {}\n", crate::flags::epoll_flag_names(events));
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

/// Prints a note to stderr (a dropped connection, a failed accept), with the
/// program's name first, as command-line tools do.
pub fn warn(message: std::fmt::Arguments<'_>) {
    let name = std::env::args().next().unwrap_or_default();
    let name = name.rsplit('/').next().unwrap_or_default();
    let line = format!("{name}: {message}\n");
    let _ = io::stderr().lock().write_all(line.as_bytes());
}
