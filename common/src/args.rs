//! Command-line arguments every example understands.
//!
//! Each example declares its own `Args` (so `--help` describes that example)
//! and flattens these into it.

use std::net::SocketAddr;

/// The listen(2) backlog when `--backlog` is not given.
///
/// The HOWTO uses 1 and then explains, in its performance notes, that under
/// 100 concurrent clients anything below 50 degrades: a handshake whose SYN
/// or final ACK finds the accept queue full is dropped, and completes only
/// when a retransmission (of the SYN, the SYN-ACK or the client's request)
/// finds room, a second later for a SYN, and often much more. 1024 keeps
/// 100 (or 1,000) simultaneous clients out of that trap; the kernel caps it
/// at `net.core.somaxconn` (4096 on recent kernels). `--backlog 1`
/// reproduces the tutorial.
pub const DEFAULT_BACKLOG: i32 = 1024;

// ANCHOR: args
/// Arguments shared by all servers.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address and port to listen on. The tutorial binds 0.0.0.0, every
    /// network interface; the default keeps the server private to this
    /// machine. Use `0.0.0.0:8080` to open it to the network, or
    /// `127.0.0.1:0` for any free port (the startup line says which).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "IP:PORT")]
    pub addr: SocketAddr,

    /// Length of the kernel's queue of connections waiting for accept(2).
    /// `--backlog 1` is the tutorial's value.
    #[arg(long, default_value_t = DEFAULT_BACKLOG, value_name = "N",
          value_parser = clap::value_parser!(i32).range(1..))]
    pub backlog: i32,

    /// Do not print requests (for load tests and benchmarks).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of the epoll servers: the shared ones and `--trace`.
#[derive(clap::Args, Debug, Clone)]
pub struct EpollArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Print every event epoll_wait(2) returns, as the file descriptor and
    /// the names of its flags (`fd 5: EPOLLIN|EPOLLRDHUP`), to stderr.
    #[arg(long)]
    pub trace: bool,
}
// ANCHOR_END: args
