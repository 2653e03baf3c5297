//! Example 2: the blocking server in an accept loop.
//!
//! The same server as example 1, but it goes back to accept(2) after each
//! client, forever. It serves one client at a time: while it waits for one
//! client's request, every other client waits in the kernel's queue. A client
//! that connects and says nothing stalls everyone (the tests show it).
//!
//! Run it with `cargo run -p example02_loop`, then `curl
//! http://127.0.0.1:8080/` as often as you like; stop it with Ctrl-C.

use std::io::{Read, Write};
use std::net::TcpStream;

use clap::Parser;
use common::{PendingResponse, Progress, RequestBuffer, ServerArgs};

/// Example 2 of the epoll HOWTO: answer HTTP requests one client at a time,
/// forever. Stop it with Ctrl-C (SIGINT) or SIGTERM: it exits with status 0.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

// ANCHOR: main
fn main() -> common::MainResult {
    let args = Args::parse();
    // Ctrl-C (SIGINT) or SIGTERM ends the server with status 0.
    common::exit_on_stop_signals()?;
    let listener = common::listen(&args.server)?;

    loop {
        // accept(2) blocks until a client's connection is in the queue, then
        // returns a new socket for talking to that client. The listening
        // socket itself never carries data.
        let connection = match listener.accept() {
            Ok((connection, _address)) => connection,
            // A client that gave up while it waited in the queue: its
            // failure says nothing about the next one.
            Err(err) if common::concerns_one_client(&err) => {
                common::warn(format_args!("accept failed: {err}"));
                continue;
            }
            Err(err) => {
                // Out of file descriptors, most likely: no reason to stop
                // serving, but retrying at once would fail again. Wait a
                // moment so that a lasting error does not spin the CPU.
                common::warn(format_args!("accept failed, pausing: {err}"));
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        // One client's failure (a reset, a broken pipe) ends that client only.
        if let Err(err) = handle(connection, args.server.quiet) {
            common::warn(format_args!("connection dropped: {err}"));
        }
    }
    // This loop never ends. Ctrl-C or SIGTERM ends the process (see
    // common::signals), and the kernel closes the listener as it exits.
}
// ANCHOR_END: main

// ANCHOR: handle
/// Reads one request from `connection`, prints it and answers it.
fn handle(mut connection: TcpStream, quiet: bool) -> std::io::Result<()> {
    let mut request = RequestBuffer::new();
    let mut buffer = [0u8; 1024];
    while request.progress() == Progress::Incomplete {
        // read(2) blocks until at least one byte has arrived, and returns at
        // most 1024 of them: a request may take several reads.
        let n = connection.read(&mut buffer)?;
        if n == 0 {
            // The client closed its side before finishing its request. The
            // Python keeps calling recv, which returns b'' forever: a spin.
            return Ok(());
        }
        request.push(&buffer[..n]);
    }

    let response = match request.progress() {
        Progress::Complete => {
            if !quiet {
                common::print_request(&request);
            }
            PendingResponse::whole()
        }
        _ => PendingResponse::too_large(),
    };
    // write_all calls write(2), which blocks until the kernel has room in
    // the socket's send buffer, until every byte is taken. (The Python's
    // single `send` may take only part and drop the rest.)
    connection.write_all(response.unsent())?;

    // Dropping the stream closes the socket: the kernel sends FIN after the
    // queued bytes, and the client sees the end of the response.
    Ok(())
}
// ANCHOR_END: handle
