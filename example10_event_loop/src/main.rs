//! Example 10's binary: e3's URL echo server, on the event loop of this
//! crate's library.
//!
//! Run it with `cargo run -p example10_event_loop`, then open
//! <http://127.0.0.1:8080/hello> in a browser, or `curl
//! http://127.0.0.1:8080/hello%20world`.

use clap::Parser;
use common::ServerArgs;
use example10_event_loop::{EventLoop, Server, echo};

/// Example 10: the e3 echo server. Answers each request with its path,
/// as plain text: /hello shows `hello`. Stop it with Ctrl-C (SIGINT) or
/// SIGTERM: it closes its sockets and exits with status 0.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

// ANCHOR: main
fn main() -> common::MainResult {
    let args = Args::parse();
    // Block SIGINT and SIGTERM first; the loop reads them from a signalfd.
    let signals = common::stop_signals()?;
    let listener = common::listen(&args.server)?;

    // The loop is a value that main owns and lends out, not a global: see
    // the library's documentation.
    let mut event_loop = EventLoop::new()?;
    event_loop.stop_on_signals(signals)?;
    let quiet = args.server.quiet;
    let echo_server = Server::new(move |request| {
        if !quiet {
            common::print_request(request);
        }
        echo::respond(request.head())
    });
    echo_server.listen(&mut event_loop, listener)?;
    event_loop.run()?;
    // Dropping the loop drops every handler: the listener, the open
    // connections and the signalfd are closed.
    Ok(())
}
// ANCHOR_END: main
