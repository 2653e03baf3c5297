//! The harness the integration tests share: build an example binary, start
//! it on a free loopback port, talk to it, look at it through /proc, and
//! kill it when the test ends, pass or fail.
//!
//! | module | holds |
//! | --- | --- |
//! | [`balance`] | how connections spread over worker threads (example 13) |
//! | [`binaries`] | building the example binaries, so a clean `cargo test` works |
//! | [`browser`] | headless Chromium: a page's DOM, a screenshot |
//! | [`chat`] | the chat server's clients: join, say, read lines; numbered lines to check |
//! | [`server`] | a running server: its port, its output, its fate |
//! | [`command_line`] | running a binary to its end: `--help`, refused arguments |
//! | [`client`] | requests, and the kernel's TCP_INFO counters for a socket |
//! | [`limits`] | RLIMIT_NOFILE: raising ours, lowering a server's |
//! | [`piped_stdin`] | starting a server whose stdin is a pipe the test writes to |
//! | [`process`] | what /proc says about a server: fds, threads, memory, CPU |
//! | [`raw`] | a server on raw pipes, unread or read as bytes; a child killed when dropped |
//! | [`targets`] | the table of servers that every-server tests run over |
//! | [`tools`] | outside programs a test needs: skip, or fail under CI; temporary directories |
//! | [`uring`] | whether the kernel lets us use io_uring; a seccomp filter that makes it refuse |
//! | [`wait`] | bounded polling, for what has no readiness signal |

pub mod balance;
pub mod binaries;
pub mod browser;
pub mod chat;
pub mod client;
pub mod command_line;
pub mod limits;
pub mod piped_stdin;
pub mod process;
pub mod raw;
pub mod server;
pub mod targets;
pub mod tools;
pub mod uring;
pub mod wait;

pub use binaries::binary;
pub use client::{GET, RESPONSE, connect, exchange, request, tcp_info};
pub use server::{Holdings, Server};
pub use wait::wait_until;

/// The epoll servers of the HOWTO (examples 3 to 6): the tutorial's
/// response, many clients at once, and `--trace`. Every HTTP server, with
/// its request and response, is in [`targets`].
pub const CONCURRENT_SERVERS: &[&str] = &[
    "example03_epoll_level",
    "example04_epoll_edge",
    "example05_cork",
    "example06_nodelay",
];
