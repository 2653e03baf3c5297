//! Example 1: a blocking server.
//!
//! It waits for one client, reads its request, prints it, sends the
//! tutorial's response and exits. Every call blocks: the program sleeps in
//! the kernel until the thing it asked for has happened.
//!
//! Run it with `cargo run -p example01_blocking`, then in another terminal
//! `curl http://127.0.0.1:8080/`.

use std::io::{Read, Write};
use std::net::TcpStream;

use clap::Parser;
use common::{PendingResponse, Progress, RequestBuffer, ServerArgs};

/// Example 1 of the epoll HOWTO: answer one HTTP request, then exit.
/// Ctrl-C (SIGINT) or SIGTERM stops it sooner, with exit status 0.
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

    // accept(2) blocks until a client's connection is in the queue, then
    // returns a new socket for talking to that client. The listening socket
    // itself never carries data.
    let (connection, _address) = listener.accept()?;
    handle(connection, args.server.quiet)?;

    // The listener is closed when it goes out of scope (the Python's
    // `serversocket.close()`).
    Ok(())
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
