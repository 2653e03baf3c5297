//! Load for the chat server (example 12), which speaks lines, not HTTP:
//! clients that read (some of which also send), clients that never read,
//! and how fast the lines reach every reader, at what cost to the server.
//!
//! Every client connects and reads its welcome line first. Then each
//! sender writes its lines from a thread of its own, and one epoll loop
//! reads every reader's socket, counting the lines that came from senders
//! (they end in `x`; the server's notices never do), until each reader
//! has had every line of every sender but itself.
//!
//! The senders keep at most [`WINDOW`] bytes of lines in flight to any
//! reader: as fast as the readers take them, and no faster. Senders
//! that outran the readers would measure how soon the server gives up
//! on readers that fall behind (it cuts them off at --max-queue), not
//! how fast it delivers.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use serde::{Deserialize, Serialize};

/// How far, in bytes of lines, the senders may run ahead of the slowest
/// reader: well within what the kernel's socket buffers hold, so the
/// server's own queues stay nearly empty.
pub const WINDOW: usize = 256 * 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    pub addr: SocketAddr,
    /// Clients that read everything (the senders among them).
    pub readers: usize,
    /// How many of the readers also send.
    pub senders: usize,
    /// Lines each sender sends.
    pub lines: u64,
    /// Bytes per line sent, newline included (the server adds the
    /// sender's name, `client 7: `, to each).
    pub line_bytes: usize,
    /// Clients that connect first and never read.
    pub stalled: usize,
    /// The server's pid, for its CPU time and memory.
    pub server_pid: Option<u32>,
    /// How long the whole delivery may take.
    pub timeout: Duration,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatReport {
    pub label: String,
    pub readers: usize,
    pub senders: usize,
    pub stalled: usize,
    pub lines_per_sender: u64,
    pub line_bytes: usize,
    /// Lines delivered to readers: each line of each sender, times the
    /// readers other than its sender.
    pub lines_delivered: u64,
    /// Bytes the readers received, notices included.
    pub bytes_delivered: u64,
    pub seconds: f64,
    pub lines_per_s: f64,
    /// The server's CPU time (user + system) during the run, from
    /// /proc/PID/stat, in ms (10 ms ticks).
    pub server_cpu_ms: Option<f64>,
    pub server_cpu_ns_per_line: Option<f64>,
    /// The server's resident memory at the end, and its peak, in KiB.
    pub server_rss_kib: Option<u64>,
    pub server_peak_rss_kib: Option<u64>,
}

/// Runs the load described by `config`.
pub fn run(config: &ChatConfig, label: &str) -> anyhow::Result<ChatReport> {
    if config.senders > config.readers || config.senders == 0 {
        bail!("senders must be between 1 and the number of readers");
    }
    if config.line_bytes < 2 {
        bail!("a line needs at least 2 bytes: `x` and its newline");
    }
    // Clients that never read: connected first, so every line is sent to
    // them. They are held until the end of the run.
    let stalled: Vec<TcpStream> = (0..config.stalled)
        .map(|_| TcpStream::connect(config.addr))
        .collect::<io::Result<_>>()
        .context("connecting the stalled clients")?;
    let mut readers = Vec::with_capacity(config.readers);
    for _ in 0..config.readers {
        readers.push(join(config.addr)?);
    }

    // One line: `xxx...x\n`. A chunk of whole lines, written again and
    // again, keeps a sender's memory small.
    let line = [vec![b'x'; config.line_bytes - 1], vec![b'\n']].concat();
    let per_chunk = (64 * 1024 / config.line_bytes).max(1) as u64;
    let chunk = line.repeat(per_chunk as usize);

    let progress = Arc::new(Progress {
        sent: (0..config.senders).map(|_| AtomicU64::new(0)).collect(),
        received: (0..config.readers).map(|_| AtomicU64::new(0)).collect(),
    });
    let window = (WINDOW / config.line_bytes).max(per_chunk as usize) as u64;
    let cpu_before = config.server_pid.map(crate::process_cpu).transpose()?;
    let start = Instant::now();
    let senders: Vec<_> = readers[..config.senders]
        .iter()
        .enumerate()
        .map(|(me, stream)| {
            let mut stream = stream.try_clone()?;
            let (chunk, lines, line_bytes) = (chunk.clone(), config.lines, config.line_bytes);
            let progress = Arc::clone(&progress);
            Ok(thread::spawn(move || -> io::Result<()> {
                let mut sent = 0;
                while sent < lines {
                    // Wait (woken by the reading loop) until the slowest
                    // reader is less than a window behind.
                    while progress.lag() >= window {
                        thread::park_timeout(Duration::from_millis(10));
                    }
                    let n = per_chunk.min(lines - sent);
                    stream.write_all(&chunk[..n as usize * line_bytes])?;
                    sent += n;
                    progress.sent[me].fetch_add(n, Ordering::Relaxed);
                }
                Ok(())
            }))
        })
        .collect::<io::Result<_>>()?;
    let wake: Vec<thread::Thread> = senders.iter().map(|s| s.thread().clone()).collect();

    let bytes_delivered = receive(config, &readers, &progress, &wake, start)?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_after = config.server_pid.map(crate::process_cpu).transpose()?;
    for sender in senders {
        sender
            .join()
            .map_err(|_| anyhow::anyhow!("a sender panicked"))?
            .context("a sender failed")?;
    }
    let lines_delivered = config.lines * config.senders as u64 * (config.readers as u64 - 1);
    let server_cpu_ms = cpu_before
        .zip(cpu_after)
        .map(|(before, after)| after.saturating_sub(before).as_secs_f64() * 1e3);
    let memory = |field| config.server_pid.and_then(|pid| status_kib(pid, field));
    let report = ChatReport {
        label: label.to_owned(),
        readers: config.readers,
        senders: config.senders,
        stalled: config.stalled,
        lines_per_sender: config.lines,
        line_bytes: config.line_bytes,
        lines_delivered,
        bytes_delivered,
        seconds,
        lines_per_s: lines_delivered as f64 / seconds,
        server_cpu_ms,
        server_cpu_ns_per_line: server_cpu_ms.map(|ms| ms * 1e6 / lines_delivered as f64),
        server_rss_kib: memory("VmRSS"),
        server_peak_rss_kib: memory("VmHWM"),
    };
    drop(stalled);
    Ok(report)
}

/// Lines sent and received so far, shared by the senders and the reading
/// loop.
struct Progress {
    /// Per sender, lines written.
    sent: Vec<AtomicU64>,
    /// Per reader, lines of senders read.
    received: Vec<AtomicU64>,
}

impl Progress {
    /// How many lines the slowest reader is behind: sent by the others,
    /// and not read yet. (Reader `i` is sender `i` too, for `i` below the
    /// number of senders.)
    fn lag(&self) -> u64 {
        let sent: Vec<u64> = self
            .sent
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        let total: u64 = sent.iter().sum();
        self.received
            .iter()
            .enumerate()
            .map(|(i, got)| {
                let owed = total - sent.get(i).copied().unwrap_or(0);
                owed.saturating_sub(got.load(Ordering::Relaxed))
            })
            .max()
            .unwrap_or(0)
    }
}

/// Connects to the chat and reads its welcome line, byte by byte so that
/// nothing after it is taken from the socket.
///
/// The socket stays blocking: its sender thread (for a sender) writes to
/// a duplicate of it, and O_NONBLOCK belongs to the open file that both
/// share. The reading loop reads only what epoll says is there.
fn join(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut welcome = Vec::new();
    BufReader::with_capacity(1, &stream)
        .read_until(b'\n', &mut welcome)
        .context("reading the welcome line")?;
    if !welcome.starts_with(b"you are ") {
        bail!(
            "not a chat server: it said {:?}",
            String::from_utf8_lossy(&welcome)
        );
    }
    Ok(stream)
}

/// Reads every reader's socket until each has had every line it is owed
/// (those of every sender but itself); returns the bytes read.
fn receive(
    config: &ChatConfig,
    readers: &[TcpStream],
    progress: &Progress,
    senders: &[thread::Thread],
    start: Instant,
) -> anyhow::Result<u64> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    // Per reader: lines still owed, and whether its last byte read was
    // an `x` (a line's end may come in the next read).
    let mut owed: Vec<u64> = (0..readers.len())
        .map(|i| config.lines * (config.senders - usize::from(i < config.senders)) as u64)
        .collect();
    let mut after_x = vec![false; readers.len()];
    for (i, reader) in readers.iter().enumerate() {
        // Level-triggered: a reader left with bytes (we read 64 KiB per
        // turn, to be fair) is reported again, and a read that epoll said
        // has bytes to take never blocks.
        epoll.add(reader, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
    }
    let mut left = owed.iter().filter(|&&n| n > 0).count();
    let mut bytes = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut events = vec![EpollEvent::empty(); 256];
    while left > 0 {
        if start.elapsed() > config.timeout {
            let short: u64 = owed.iter().sum();
            bail!(
                "timed out after {:?}: {short} lines not delivered",
                config.timeout
            );
        }
        let ready = match epoll.wait(&mut events, EpollTimeout::from(100u16)) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        };
        for event in &events[..ready] {
            let i = event.data() as usize;
            let n = match (&readers[i]).read(&mut buffer) {
                Ok(0) => bail!(
                    "the server closed reader {i} (fd {})",
                    readers[i].as_raw_fd()
                ),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err).context("reading"),
            };
            bytes += n as u64;
            let mut lines = 0;
            let mut previous_x = after_x[i];
            for &byte in &buffer[..n] {
                if byte == b'\n' && previous_x {
                    lines += 1;
                }
                previous_x = byte == b'x';
            }
            after_x[i] = previous_x;
            progress.received[i].fetch_add(lines, Ordering::Relaxed);
            if owed[i] > 0 {
                owed[i] = owed[i].saturating_sub(lines);
                if owed[i] == 0 {
                    left -= 1;
                }
            }
        }
        // Readers made progress: a sender waiting for the window may go.
        for sender in senders {
            sender.unpark();
        }
    }
    Ok(bytes)
}

/// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}
