//! Example 0: a blocking echo server, one client at a time.
//!
//! The program the e3 article opens with: accept a client, then read and
//! write back whatever arrives until the client closes its side. Before any
//! HTTP, it shows what TCP gives a program: a stream of bytes, not a stream
//! of messages. A read(2) returns whatever bytes have arrived so far, up to
//! the size of the buffer: one write of the client's may come back in
//! several reads, and several of its writes in one. The server does not care,
//! because it only copies bytes; an HTTP server must find the end of a
//! request itself (examples 1 onwards, `common::RequestBuffer`).
//!
//! Run it with `cargo run -p example00_echo`, then type lines into
//! `nc 127.0.0.1 8080`; each comes back. A second `nc` waits, its lines
//! unanswered, until the first one quits (Ctrl-C: Debian's nc keeps the
//! connection open after Ctrl-D unless it was started with -N).

use std::io::{self, Read, Write};
use std::net::TcpStream;

use clap::Parser;
use common::ServerArgs;

/// Example 0: echo every byte a client sends back to it, one client at a
/// time, until it closes. Prints `connected by IP:PORT` for each client
/// (unless --quiet). Stop it with Ctrl-C (SIGINT) or SIGTERM: it exits
/// with status 0.
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
    // socket, bind, listen. The article binds 127.0.0.1:9999 and calls
    // `listen()` with Python's default backlog; we keep the loopback
    // address, use the port all examples share, and the shared backlog.
    let listener = common::listen(&args.server)?;

    // The article accepts one client and exits. A server that serves one
    // client after the other shows more: the second client waits.
    loop {
        // accept(2) blocks until a client is in the kernel's queue.
        let (connection, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors, or a client that left while queued:
                // no reason to stop. Pause so a lasting error does not spin.
                common::warn(format_args!("accept failed: {err}"));
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        if !args.server.quiet {
            say(format_args!("connected by {peer}"));
        }
        match echo(connection) {
            Ok(total) if !args.server.quiet => {
                say(format_args!("{peer} closed after {total} bytes"));
            }
            Ok(_) => {}
            // A reset or a broken pipe ends this client, not the server.
            Err(err) => common::warn(format_args!("{peer}: connection dropped: {err}")),
        }
        // `connection` was moved into `echo` and dropped there: closed.
    }
}
// ANCHOR_END: main

// ANCHOR: echo
/// Writes back every byte `connection` sends, until the client closes its
/// side. Returns how many bytes went round.
fn echo(mut connection: TcpStream) -> io::Result<u64> {
    let mut buffer = [0u8; 1024];
    let mut total = 0;
    loop {
        // read(2) blocks until at least one byte has arrived, then returns
        // what is there, at most 1024 bytes: not "one message". A client's
        // 5,000-byte write may arrive as 1024 + 1024 + ... or, if we were
        // slow, as full buffers, while a client typing slowly gives one
        // line per read. The boundaries are the network's, not the client's.
        let n = match connection.read(&mut buffer) {
            // 0 bytes: the client has closed its side (end of stream).
            Ok(0) => return Ok(total),
            Ok(n) => n,
            // A signal interrupted the read: read again.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        // write_all loops over write(2) until the kernel has taken every
        // byte (the article's `sendall`). It blocks while the client's
        // receive buffer is full: a client that sends a lot without ever
        // reading stalls, and with it this server. Echo clients must read
        // while they write.
        connection.write_all(&buffer[..n])?;
        total += n as u64;
    }
}
// ANCHOR_END: echo

/// Prints one line to stdout, ignoring a closed pipe (see `common::output`).
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stdout().lock(), "{line}");
}
