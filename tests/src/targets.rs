//! The servers under test, as a table: which binary, with which arguments,
//! serving clients in which way, asked what and answering what.
//!
//! The tests that every server must pass (robustness, leaks, shutdown, the
//! command line) run one body over this table, so a new server is one more
//! row, and a failure names the row.
//!
//! Adding a server: a constant here, in [`SERVERS`] (or beside example 1
//! in [`every_server`]); then, so that each of its tests has a name grep
//! finds, a `#[case::name(&CONSTANT)]` row in each table of
//! `tests/tests/answers.rs` that it belongs to (its header says which). A
//! test there fails until the rows are in.

use std::process::Command;

use crate::client::{GET, RESPONSE};
use crate::{Holdings, Server};

/// How a server serves its clients: what a test may expect of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// One client after another, in blocking calls (examples 1 and 2).
    OneAtATime,
    /// Many at once, one thread, epoll (examples 3 to 6, and 10).
    Epoll,
    /// Many at once, a thread per connection, up to `--max-threads`
    /// (example 7).
    Threads,
    /// Many at once, one thread, select(2): no fd of FD_SETSIZE (1024) or
    /// more (example 8).
    Select,
    /// Many at once, one thread, poll(2) (example 8).
    Poll,
    /// Many at once, on a fixed pool of threads that exist from the start
    /// and take turns in one epoll_wait (tokio's multi-thread runtime,
    /// example 15): the thread count is constant, but not one.
    WorkerPool,
    /// Many at once, a fixed number of worker threads, each with its own
    /// epoll instance (example 13).
    EpollWorkers,
    /// Many at once, one thread, io_uring: the operations themselves are
    /// submitted to the kernel, and the loop handles their completions
    /// (example 16). No epoll instance, so no interest entries.
    Completion,
}

/// One server under test.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// What failure messages call it: the binary, and its arguments if any.
    pub name: &'static str,
    /// The workspace package and binary.
    pub binary: &'static str,
    /// Arguments it always runs with (before any a test adds).
    pub args: &'static [&'static str],
    pub model: Model,
    /// A well-formed request.
    pub request: &'static [u8],
    /// The exact answer to `request`.
    pub response: &'static [u8],
    /// How its answer to a request of binary garbage begins.
    pub garbage_answer: &'static [u8],
}

/// Example 10's request: its echo answers a path with the path.
pub const ECHO_REQUEST: &[u8] = b"GET /hello HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";

/// Example 10's answer to [`ECHO_REQUEST`], byte for byte.
pub const ECHO_RESPONSE: &[u8] = b"HTTP/1.0 200 OK\r\n\
Date: Mon, 1 Jan 1996 01:01:01 GMT\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
X-Content-Type-Options: nosniff\r\n\
Content-Length: 5\r\n\
\r\n\
hello";

/// A server of the tutorial's kind: any request, the one response.
const fn tutorial(name: &'static str, binary: &'static str, model: Model) -> Target {
    Target {
        name,
        binary,
        args: &[],
        model,
        request: GET,
        response: RESPONSE,
        // These servers do not parse requests: whatever ends with a blank
        // line gets the response.
        garbage_answer: RESPONSE,
    }
}

pub const EXAMPLE01: Target = tutorial(
    "example01_blocking",
    "example01_blocking",
    Model::OneAtATime,
);
pub const EXAMPLE02: Target = tutorial("example02_loop", "example02_loop", Model::OneAtATime);
pub const EXAMPLE03: Target = tutorial(
    "example03_epoll_level",
    "example03_epoll_level",
    Model::Epoll,
);
pub const EXAMPLE04: Target =
    tutorial("example04_epoll_edge", "example04_epoll_edge", Model::Epoll);
pub const EXAMPLE05: Target = tutorial("example05_cork", "example05_cork", Model::Epoll);
pub const EXAMPLE06: Target = tutorial("example06_nodelay", "example06_nodelay", Model::Epoll);
pub const EXAMPLE07: Target = tutorial("example07_threads", "example07_threads", Model::Threads);
pub const EXAMPLE08_SELECT: Target = Target {
    args: &["--poller", "select"],
    ..tutorial(
        "example08_select_poll --poller select",
        "example08_select_poll",
        Model::Select,
    )
};
pub const EXAMPLE08_POLL: Target = Target {
    args: &["--poller", "poll"],
    ..tutorial(
        "example08_select_poll --poller poll",
        "example08_select_poll",
        Model::Poll,
    )
};
pub const EXAMPLE10: Target = Target {
    name: "example10_event_loop",
    binary: "example10_event_loop",
    args: &[],
    model: Model::Epoll,
    request: ECHO_REQUEST,
    response: ECHO_RESPONSE,
    // The echo reads the request line: garbage is not `METHOD /path
    // VERSION`.
    garbage_answer: b"HTTP/1.0 400 Bad Request\r\n",
};

/// Example 11 with a request timeout long enough for the table's tests,
/// which hold idle and slow clients for seconds (10,000 of them, in
/// robustness.rs). Its lesson, the timeout itself, is in timeouts.rs.
pub const EXAMPLE11: Target = Target {
    args: &["--request-timeout", "60"],
    ..tutorial(
        "example11_timeouts --request-timeout 60",
        "example11_timeouts",
        Model::Epoll,
    )
};
/// Example 13 as it starts by default: a worker per CPU, each with its
/// own SO_REUSEPORT listener, TCP_DEFER_ACCEPT of 1 s.
pub const EXAMPLE13: Target = tutorial(
    "example13_many_cores",
    "example13_many_cores",
    Model::EpollWorkers,
);
/// Example 13 with one listener for three workers, registered with
/// EPOLLEXCLUSIVE: its out-of-descriptors pause cannot use EPOLL_CTL_MOD.
pub const EXAMPLE13_EXCLUSIVE: Target = Target {
    args: &["--balance", "exclusive", "--workers", "3"],
    ..tutorial(
        "example13_many_cores --balance exclusive --workers 3",
        "example13_many_cores",
        Model::EpollWorkers,
    )
};

pub const EXAMPLE14: Target = tutorial("example14_mio", "example14_mio", Model::Epoll);
pub const EXAMPLE15: Target = tutorial("example15_tokio", "example15_tokio", Model::Epoll);
pub const EXAMPLE15_MULTI_THREAD: Target = Target {
    args: &["--runtime", "multi-thread"],
    ..tutorial(
        "example15_tokio --runtime multi-thread",
        "example15_tokio",
        Model::WorkerPool,
    )
};
/// Example 16, with one multishot accept for every client.
pub const EXAMPLE16: Target = tutorial(
    "example16_io_uring",
    "example16_io_uring",
    Model::Completion,
);
/// Example 16 with a single-shot accept per client, as on kernels before
/// 5.19: the fallback, forced, so that every test runs it too.
pub const EXAMPLE16_SINGLE_SHOT: Target = Target {
    args: &["--no-multishot"],
    ..tutorial(
        "example16_io_uring --no-multishot",
        "example16_io_uring",
        Model::Completion,
    )
};

/// Every server that answers request after request (all but example 1,
/// which answers one and exits; examples 0 and 9 are not HTTP servers).
pub const SERVERS: &[Target] = &[
    EXAMPLE02,
    EXAMPLE03,
    EXAMPLE04,
    EXAMPLE05,
    EXAMPLE06,
    EXAMPLE07,
    EXAMPLE08_SELECT,
    EXAMPLE08_POLL,
    EXAMPLE10,
    EXAMPLE11,
    EXAMPLE13,
    EXAMPLE13_EXCLUSIVE,
    EXAMPLE14,
    EXAMPLE15,
    EXAMPLE15_MULTI_THREAD,
    EXAMPLE16,
    EXAMPLE16_SINGLE_SHOT,
];

/// Servers that speak no HTTP but take the shared options (`--addr`,
/// `--backlog`, `--quiet`, `--trace`): the command-line tests run over
/// them too. Each has its own fault file (the chat: chat_faults.rs).
pub const NOT_HTTP: &[&str] = &["example12_chat"];

/// The servers of [`SERVERS`] that this machine can run; each of the
/// others is skipped with a banner that says why (see
/// [`Target::runs_here`]).
pub fn servers() -> impl Iterator<Item = &'static Target> {
    SERVERS.iter().filter(|target| target.runs_here())
}

/// Every HTTP server that this machine can run: example 1 and
/// [`servers`].
pub fn every_server() -> impl Iterator<Item = &'static Target> {
    std::iter::once(&EXAMPLE01).chain(servers())
}

/// The servers that serve clients concurrently: all of [`servers`] but
/// example 2.
pub fn concurrent() -> impl Iterator<Item = &'static Target> {
    servers().filter(|target| target.is_concurrent())
}

/// The binaries of example 1 and [`SERVERS`], each once (in name order: a
/// binary with several targets, such as example 8's two pollers, need not
/// have them next to each other in the table). All of them, those this
/// machine cannot run too: each reads its command line before it asks the
/// kernel for anything.
pub fn binaries() -> Vec<&'static str> {
    let mut binaries: Vec<&str> = std::iter::once(&EXAMPLE01)
        .chain(SERVERS)
        .map(|target| target.binary)
        .collect();
    binaries.sort_unstable();
    binaries.dedup();
    binaries
}

impl Target {
    pub fn is_concurrent(&self) -> bool {
        self.model != Model::OneAtATime
    }

    /// True when this machine can run the server. Only io_uring (example
    /// 16) can be refused by a kernel on which everything else works (a
    /// container's seccomp profile, `kernel.io_uring_disabled`): then this
    /// prints a banner saying which test skips the server, and why, and
    /// returns false. Never a silent skip.
    pub fn runs_here(&self) -> bool {
        if self.model != Model::Completion {
            return true;
        }
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("this test");
        crate::uring::available_or_skip(&format!("{test}, on {}", self.name))
    }

    /// Its arguments followed by `extra`.
    pub fn args_with<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        self.args.iter().chain(extra).copied().collect()
    }

    /// Starts the server with its arguments and `extra`.
    pub fn start(&self, extra: &[&str]) -> Server {
        Server::start(self.binary, &self.args_with(extra))
    }

    /// Like [`start`](Self::start), with a chance to change the command.
    pub fn start_with(&self, extra: &[&str], configure: impl FnOnce(&mut Command)) -> Server {
        Server::start_with(self.binary, &self.args_with(extra), configure)
    }

    /// Starts the server quietly (plus `extra`), has it answer one request,
    /// so that everything it opens for itself exists, and returns it with
    /// what it holds then, its clients gone.
    pub fn settled(&self, extra: &[&str]) -> (Server, Holdings) {
        self.settled_with(extra, |_| {})
    }

    /// Like [`settled`](Self::settled), with a chance to change the command.
    pub fn settled_with(
        &self,
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> (Server, Holdings) {
        let server = self.start_with(&[&["--quiet"], extra].concat(), configure);
        self.assert_answers(&server, "at the start");
        let baseline = server.idle_holdings();
        (server, baseline)
    }

    /// Asserts that `server` answers one request exactly; `when` says when,
    /// for the failure message.
    pub fn assert_answers(&self, server: &Server, when: &str) {
        let answer = crate::request(server.addr(), self.request);
        assert!(
            answer == self.response,
            "{} {when}: answered {:?}, not {:?}",
            self.name,
            String::from_utf8_lossy(&answer),
            String::from_utf8_lossy(self.response),
        );
    }

    /// Waits until `server` holds `baseline` again, then checks it still
    /// answers, and that answering left nothing behind either (a thread
    /// that outlives its connection, say).
    pub fn assert_back(&self, server: &Server, baseline: Holdings) {
        server.assert_back_to(baseline);
        self.assert_answers(server, "after its clients left");
        server.assert_back_to(baseline);
    }
}

/// The answer of examples 7 and 8 to a client they cannot serve: past
/// `--max-threads`, or (select) on an fd of FD_SETSIZE or more.
pub const UNAVAILABLE: &[u8] = b"HTTP/1.0 503 Service Unavailable\r\n\
Content-Type: text/plain\r\n\
Content-Length: 21\r\n\
\r\n\
Too many connections\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// `binaries()` names every server's binary, each once, however the table
    /// orders them.
    #[test]
    fn binaries_lists_each_server_binary_once() {
        let binaries = binaries();
        let unique: std::collections::BTreeSet<_> = binaries.iter().collect();
        assert_eq!(unique.len(), binaries.len(), "{binaries:?}");
        assert!(every_server().all(|target| binaries.contains(&target.binary)));
    }
}
