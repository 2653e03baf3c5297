//! The accept loop most tokio examples show, and what it does when the
//! process runs out of file descriptors. Not a step of the book: the
//! counter-example its tokio chapter runs beside example 15.
//!
//! ```sh
//! # The `?` version: the first EMFILE ends the server, and every client
//! # it held with it.
//! (ulimit -n 64; cargo run -p example15_tokio --example naive_accept)
//! # Log the error and carry on: a busy loop, 100% of a CPU, while
//! # descriptors are short.
//! (ulimit -n 64; cargo run -p example15_tokio --example naive_accept -- --log-and-retry)
//! ```
//!
//! Example 15's `accept_loop` does neither: it pauses.

use clap::Parser;
use common::{Progress, RequestBuffer, ServerArgs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A naive tokio server: `listener.accept().await?` in a loop. Ctrl-C
/// kills it (it does not stop cleanly: it is a counter-example).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,

    /// When accept fails, print the error and call accept again at once,
    /// instead of returning the error from `main` with `?`.
    #[arg(long)]
    log_and_retry: bool,
}

fn main() -> common::MainResult {
    let args = Args::parse();
    let listener = common::listen(&args.server)?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::from_std(listener)?;
        // ANCHOR: naive_loop
        loop {
            let (stream, _address) = if args.log_and_retry {
                match listener.accept().await {
                    Ok(client) => client,
                    Err(err) => {
                        common::warn(format_args!("accept failed: {err}"));
                        continue;
                    }
                }
            } else {
                listener.accept().await?
            };
            tokio::spawn(answer(stream));
        }
        // ANCHOR_END: naive_loop
    })
}

/// Reads a request and sends the tutorial's response.
async fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut request = RequestBuffer::new();
    let mut buffer = [0u8; 1024];
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 || request.push(&buffer[..n]) != Progress::Incomplete {
            break;
        }
    }
    if request.is_complete() {
        stream.write_all(common::RESPONSE).await?;
    }
    stream.shutdown().await
}
