//! Example 10: the e3 library, an epoll event loop to build servers on.
//!
//! The article "Building a simple python epoll server" turns the HOWTO's
//! loop into a small library, e3: a `Loop` that owns the epoll instance and
//! calls a handler registered for each file descriptor, and a `Server` that
//! listens and registers its accept handler. Its demo server echoes the URL
//! back. This crate is that library in Rust, and the echo server is its
//! binary (`cargo run -p example10_event_loop`, then open
//! <http://127.0.0.1:8080/hello> in a browser).
//!
//! | module | holds |
//! | --- | --- |
//! | [`event_loop`] | [`EventLoop`]: epoll, handlers per fd, stopping |
//! | [`server`] | [`Server`]: the accept handler and a handler per connection |
//! | [`echo`] | the URL echo: request line in, plain-text response out |
//!
//! # No singleton: the loop is owned and passed
//!
//! e3 reaches its loop from anywhere through `Loop.instance()`, a global.
//! Rust pushes the other way, for reasons that are good design anywhere:
//!
//! - A global that handlers change must be `static`, so it needs a lock (or
//!   a `RefCell` in a thread local). A handler runs *while the loop runs*
//!   and often wants the loop (the accept handler registers each new
//!   connection): through a global it would lock a lock already held by
//!   the running loop, a deadlock, or borrow a `RefCell` twice, a panic.
//!   Here [`EventLoop::run`] lends itself to each handler as `&mut
//!   EventLoop`, and the borrow checker proves the two never overlap.
//! - Whoever holds the loop decides when it starts, stops and is dropped
//!   (which closes every fd it watches). A global lives until the process
//!   ends.
//! - `cargo test` runs tests on several threads in one process. With one
//!   global loop, two tests that each start a server would share it; with
//!   owned loops, each test has its own (this crate's tests do exactly that).
//!
//! # Building your own server
//!
//! Register anything that implements [`Handler`], or use [`Server`] with a
//! function from request to response bytes. This example answers every
//! request with `Hello, world!`, makes one request and stops:
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//!
//! use example10_event_loop::{EventLoop, Server};
//!
//! # fn main() -> std::io::Result<()> {
//! let mut event_loop = EventLoop::new()?;
//! let listener = TcpListener::bind("127.0.0.1:0")?; // any free port
//! let addr = listener.local_addr()?;
//! let hello = Server::new(|_request| common::RESPONSE.to_vec());
//! hello.listen(&mut event_loop, listener)?;
//!
//! // The loop runs on this thread; a client on another one stops it when
//! // it has its answer.
//! let stop = event_loop.stop_handle()?;
//! let client = std::thread::spawn(move || {
//!     let mut stream = TcpStream::connect(addr).unwrap();
//!     stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
//!     let mut response = String::new();
//!     stream.read_to_string(&mut response).unwrap();
//!     stop.stop();
//!     response
//! });
//! event_loop.run()?;
//! assert!(client.join().unwrap().ends_with("\r\n\r\nHello, world!"));
//! # Ok(())
//! # }
//! ```
//!
//! # Where e3 goes wrong, and what this crate does instead
//!
//! - The loop has the HTTP server inside it (its `requests` and `responses`
//!   dicts, the URL parsing) and one `server_fd`: one server per process.
//!   Here the loop knows only fds and handlers; any number of servers, of
//!   any kind, share it.
//! - `stop()` closes the epoll fd but never leaves `start()`'s `while
//!   True`. Here [`EventLoop::stop`] makes [`EventLoop::run`] return.
//! - Reading loops on `recv` until an exception; a client that closes
//!   makes `recv` return `b''` forever, and the loop hangs. A read of 0
//!   bytes closes the connection here.
//! - Requests and responses are never removed from their dicts, and a
//!   request may grow without limit. Each connection's state lives in its
//!   handler and dies with it; requests stop at
//!   [`common::MAX_REQUEST_BYTES`].
//! - The echo crashes on non-UTF-8 and on a malformed request line, sends a
//!   wrong `Content-Length` for non-ASCII text, and lets browsers sniff the
//!   echoed text as HTML. See [`echo`].

pub mod echo;
pub mod event_loop;
pub mod server;

pub use event_loop::{Control, EventLoop, Handler, StopHandle, Token};
/// The event flags handlers get and ask for, re-exported so that a
/// server built on this crate needs no direct nix dependency.
pub use nix::sys::epoll::EpollFlags;
pub use server::{Responder, Server};
