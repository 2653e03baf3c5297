//! `chatload`: load the chat server (example 12) and report how fast lines
//! reach every reader, and what that costs the server.
//!
//! ```sh
//! cargo run --release -p example12_chat -- --quiet --addr 127.0.0.1:8080 &
//! cargo run --release -p loadgen --bin chatload -- --readers 100 --server-pid $! 127.0.0.1:8080
//! ```
//!
//! `loadgen/chat.sh` starts the server and runs this for you.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use loadgen::chat::{ChatConfig, run};

/// Load the chat server: READERS clients read every line; the first
/// SENDERS of them also send LINES lines each, as fast as the server takes
/// them; STALLED more clients never read. Reports lines delivered per
/// second and, with --server-pid, the server's CPU time per delivered line
/// and its memory.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The chat server's address.
    addr: SocketAddr,

    /// Clients that read every line.
    #[arg(long, default_value_t = 10, value_name = "N")]
    readers: usize,

    /// How many of the readers also send.
    #[arg(long, default_value_t = 1, value_name = "N")]
    senders: usize,

    /// Lines each sender sends.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    lines: u64,

    /// Bytes per line, newline included.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    line_bytes: usize,

    /// Clients that connect first and never read.
    #[arg(long, default_value_t = 0, value_name = "N")]
    stalled: usize,

    /// The server's pid: report its CPU time per line and its memory.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,

    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120.0, value_name = "SECONDS")]
    timeout: f64,

    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,

    /// A name for this run in the JSON report.
    #[arg(long, default_value = "", value_name = "TEXT")]
    label: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = ChatConfig {
        addr: args.addr,
        readers: args.readers,
        senders: args.senders,
        lines: args.lines,
        line_bytes: args.line_bytes,
        stalled: args.stalled,
        server_pid: args.server_pid,
        timeout: Duration::from_secs_f64(args.timeout),
    };
    let report = run(&config, &args.label)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "{} readers ({} sending {} lines of {} bytes each), {} stalled",
        report.readers, report.senders, report.lines_per_sender, report.line_bytes, report.stalled
    );
    println!(
        "delivered {} lines ({:.1} MB) in {:.2} s: {:.0} lines/s",
        report.lines_delivered,
        report.bytes_delivered as f64 / 1e6,
        report.seconds,
        report.lines_per_s
    );
    if let (Some(ms), Some(ns)) = (report.server_cpu_ms, report.server_cpu_ns_per_line) {
        println!("server CPU: {ms:.0} ms, {ns:.0} ns per delivered line");
    }
    if let (Some(rss), Some(peak)) = (report.server_rss_kib, report.server_peak_rss_kib) {
        println!("server memory: {rss} KiB resident at the end, {peak} KiB at its peak");
    }
    Ok(())
}
