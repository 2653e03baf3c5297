//! What every example shares and none of them teaches.
//!
//! | module | holds |
//! | --- | --- |
//! | [`response`] | the tutorial's response bytes, and a response being sent in parts |
//! | [`request`] | a request buffer that finds the end of a request and caps its size |
//! | [`args`] | the command-line arguments all servers accept |
//! | [`failure`] | the error that stops a server, shown on one line |
//! | [`listen`](mod@listen) | the listening socket: socket, SO_REUSEADDR, bind, listen |
//! | [`accept`] | accepting in an epoll loop: skip a failed client, pause when out of descriptors |
//! | [`epoll`] | an epoll token for a socket, and the errors that mean "try later" |
//! | [`flags`] | names for epoll's event bits, for `--trace` |
//! | [`signals`] | a signalfd for SIGINT and SIGTERM, so the epoll loop can stop cleanly |
//! | [`output`] | printing requests and trace lines without dying on a closed pipe or going deaf to Ctrl-C on a full one |
//!
//! A note on SIGPIPE: writing to a socket whose peer has gone raises SIGPIPE,
//! which kills a C program. Rust's runtime sets SIGPIPE to "ignore" before
//! `main` runs, so the write returns the error EPIPE instead, and the servers
//! treat it like any other dead connection.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "these examples use epoll, which only Linux has: on macOS or Windows, \
     run them in a Linux virtual machine or container"
);

pub mod accept;
pub mod args;
pub mod epoll;
pub mod failure;
pub mod flags;
pub mod listen;
pub mod output;
pub mod request;
pub mod response;
pub mod signals;

pub use accept::{ACCEPT_PAUSE, Acceptor};
pub use args::{EpollArgs, ServerArgs};
pub use epoll::{is_transient, token_of};
pub use failure::{Failure, MainResult};
pub use flags::epoll_flag_names;
pub use listen::{concerns_one_client, explain_bind_error, listen, listen_with};
pub use output::{print_request, trace_event, warn};
pub use request::{MAX_REQUEST_BYTES, Progress, RequestBuffer};
pub use response::{PendingResponse, RESPONSE};
pub use signals::{exit_on_stop_signals, stop_signals};
