//! A load generator for the examples, built the way the examples are: a few
//! threads, each running its own epoll loop over non-blocking sockets.
//!
//! Every request gets a new connection (HTTP/1.0, as the tutorial speaks):
//! socket, non-blocking connect, one write, reads until the server closes,
//! close. A thread per connection would spend more CPU switching between
//! threads than the servers spend answering; one epoll loop keeps `-c 100`
//! connections in flight from one thread, so the load generator is not what
//! a measurement measures.
//!
//! | item | holds |
//! | --- | --- |
//! | [`Target`] | the URL: address, Host header, path, the request bytes |
//! | [`Config`] | what to run: concurrency, count or duration, idle connections |
//! | [`run`] | the run itself; returns a [`Report`] |
//! | [`Expect`] | what a right response looks like |
//! | [`ErrorKind`] | refused, reset, timeout, wrong response, other |
//! | [`process_cpu`] | a process's CPU time from /proc/PID/stat |
//! | [`chat`] | load for the chat server (example 12): lines delivered per second, server CPU per line |

pub mod chat;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Socket, Type};

/// Responses longer than this are cut (and then fail the check): the
/// examples answer in 117 bytes.
const MAX_RESPONSE: usize = 64 * 1024;

/// The longest latency the histogram holds, in microseconds (one hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Where requests go, parsed from `http://HOST:PORT/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// `HOST:PORT` as written in the URL, for the Host header.
    pub host: String,
    pub path: String,
}

impl Target {
    /// Parses an `http://` URL. The host is resolved once, here: a load
    /// generator that asked DNS per request would measure DNS.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("only http:// URLs are supported, not {url:?}");
        };
        let (host, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        if host.is_empty() {
            bail!("no host in {url:?}");
        }
        // `[::1]:8080` and `127.0.0.1:8080` parse as they are; a name or a
        // missing port goes through the resolver (port 80 by default).
        let with_port = if host.ends_with(']') || !host.contains(':') {
            format!("{host}:80")
        } else {
            host.to_owned()
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        Ok(Target {
            addr,
            host: host.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The bytes of one request.
    pub fn request(&self) -> Vec<u8> {
        format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: loadgen\r\n\r\n",
            self.path, self.host
        )
        .into_bytes()
    }
}

/// What a right response looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The status code on the status line (`HTTP/1.x CODE ...`).
    pub status: u16,
    /// The body, exactly, when given.
    pub body: Option<Vec<u8>>,
}

impl Expect {
    /// Whether `response` (everything up to the server's close) is right.
    pub fn accepts(&self, response: &[u8]) -> bool {
        let Some(head_end) = find(response, b"\r\n\r\n") else {
            return false;
        };
        let status_line = response.split(|&b| b == b'\r').next().unwrap_or_default();
        let mut words = status_line.split(|&b| b == b' ');
        let version_ok = words.next().is_some_and(|v| v.starts_with(b"HTTP/1."));
        let status_ok = words.next() == Some(self.status.to_string().as_bytes());
        let body = &response[head_end + 4..];
        let body_ok = self.body.as_ref().is_none_or(|want| want == body);
        version_ok && status_ok && body_ok
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// How long a run goes on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// This many requests in all.
    Requests(u64),
    /// New requests start until this much time has passed.
    Duration(Duration),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    /// Requests in flight at any moment.
    pub concurrency: usize,
    pub amount: Amount,
    /// Event-loop threads; the concurrency is shared among them.
    pub threads: usize,
    /// Connections opened before the run and held, silent, until it ends.
    pub idle: usize,
    /// A request not answered in this time counts as a timeout.
    pub timeout: Duration,
    pub expect: Expect,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// ECONNREFUSED: nobody listens, or the accept queue overflowed and the
    /// kernel answered the SYN with a reset.
    Refused,
    /// ECONNRESET or EPIPE: the server aborted the connection.
    Reset,
    /// No complete answer within `--timeout`.
    Timeout,
    /// An answer, but not the expected one (status line or body).
    WrongResponse,
    /// Anything else (EADDRNOTAVAIL: out of ephemeral ports, EMFILE, ...).
    Other,
}

impl ErrorKind {
    /// Sorts an I/O error into a kind.
    pub fn of(err: &io::Error) -> ErrorKind {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => ErrorKind::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ErrorKind::Reset,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Other,
        }
    }
}

/// Latency percentiles of the successful requests, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

/// What a run measured. Serialised as is by `--json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// A name for the run (`--label`), for reports comparing runs.
    pub label: String,
    pub url: String,
    pub concurrency: usize,
    pub threads: usize,
    pub idle_held: usize,
    pub completed: u64,
    pub failed: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub elapsed_s: f64,
    /// Completed (right) responses per second.
    pub requests_per_s: f64,
    pub latency: Latency,
    /// CPU time (user + system) this load generator used, per completed
    /// request, in microseconds.
    pub client_cpu_us_per_request: f64,
    /// The same for the server, when its PID was given (`--server-pid`;
    /// the CPU time of several PIDs is summed).
    pub server_cpu_us_per_request: Option<f64>,
    /// What made the requests: `loadgen`, or `ab` in lines a script wrote.
    #[serde(default = "loadgen_name")]
    pub client: String,
    /// How much some of the kernel's TCP counters (/proc/net/netstat) grew
    /// during the run: `ListenOverflows`, `ListenDrops`, `TCPSynRetrans`.
    /// They count for the whole machine, not only this run.
    #[serde(default)]
    pub kernel: BTreeMap<String, u64>,
}

fn loadgen_name() -> String {
    "loadgen".to_owned()
}

/// The /proc/net/netstat counters a run reports.
pub const KERNEL_COUNTERS: &[&str] = &["ListenOverflows", "ListenDrops", "TCPSynRetrans"];

/// Reads the `TcpExt` counters named in [`KERNEL_COUNTERS`] (what `nstat
/// -az TcpExtListenOverflows` shows); empty when /proc/net/netstat is not
/// readable.
pub fn kernel_counters() -> BTreeMap<String, u64> {
    std::fs::read_to_string("/proc/net/netstat")
        .map(|text| parse_netstat(&text))
        .unwrap_or_default()
}

/// /proc/net/netstat holds pairs of lines: `TcpExt: Name1 Name2 ...`, then
/// `TcpExt: value1 value2 ...`.
fn parse_netstat(text: &str) -> BTreeMap<String, u64> {
    let lines: Vec<&str> = text.lines().collect();
    let mut counters = BTreeMap::new();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some(names), Some(values)) = (
            names.strip_prefix("TcpExt:"),
            values.strip_prefix("TcpExt:"),
        ) else {
            continue;
        };
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            if KERNEL_COUNTERS.contains(&name) {
                counters.insert(name.to_owned(), value.parse().unwrap_or(0));
            }
        }
    }
    counters
}

/// Shared between the threads: what is left to start, what is done.
struct Shared {
    /// Requests not yet started (count mode); goes below zero at the end.
    left: AtomicI64,
    deadline: Option<Instant>,
    /// Requests finished, right or wrong: the progress bar reads it.
    finished: AtomicU64,
}

impl Shared {
    /// Claims the right to start one more request.
    fn take(&self) -> bool {
        match self.deadline {
            Some(deadline) => Instant::now() < deadline,
            None => self.left.fetch_sub(1, Ordering::Relaxed) > 0,
        }
    }
}

/// What one thread measured.
struct Tally {
    latency: Histogram<u64>,
    completed: u64,
    errors: BTreeMap<ErrorKind, u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds"),
            completed: 0,
            errors: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency.add(other.latency).expect("same bounds");
        self.completed += other.completed;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }
}

/// A run in progress, for a caller that shows progress while it goes.
pub struct Running {
    shared: Arc<Shared>,
    workers: Vec<thread::JoinHandle<Tally>>,
    idle: Vec<TcpStream>,
    started: Instant,
    cpu_before: Duration,
    counters_before: BTreeMap<String, u64>,
    /// The server's processes, and the CPU time they had used at the start.
    server: Option<(Vec<u32>, Duration)>,
    config: Config,
}

/// Starts a run: opens the idle connections, then the event-loop threads.
/// `server_pids` are the processes whose CPU time is measured (summed):
/// none, the server, or each of its worker processes.
pub fn start(config: Config, server_pids: &[u32]) -> anyhow::Result<Running> {
    if config.concurrency == 0 || config.threads == 0 {
        bail!("concurrency and threads must be at least 1");
    }
    let held_before = descriptors(server_pids);
    let idle = open_idle(config.target.addr, config.idle)?;
    if !idle.is_empty() {
        // The server accepts in arrival order: once a request on a newer
        // connection is answered, it has accepted every idle one, and the
        // CPU that cost it stays out of the measurement.
        fence(&config.target, config.timeout)
            .context("the server did not answer after the idle connections were opened")?;
        // Unless the kernel holds silent connections back from accept(2)
        // (TCP_DEFER_ACCEPT: example 13, nginx's `deferred`) and hands
        // them over a second or so later. Then wait until the server holds
        // a descriptor for each, so that accepting them is not measured.
        let deadline = Instant::now() + config.timeout;
        while descriptors(server_pids) < held_before + idle.len() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let server = match server_pids {
        [] => None,
        pids => Some((pids.to_vec(), processes_cpu(pids)?)),
    };
    let shared = Arc::new(Shared {
        left: AtomicI64::new(match config.amount {
            Amount::Requests(n) => i64::try_from(n).unwrap_or(i64::MAX),
            Amount::Duration(_) => 0,
        }),
        deadline: match config.amount {
            Amount::Duration(d) => Some(Instant::now() + d),
            Amount::Requests(_) => None,
        },
        finished: AtomicU64::new(0),
    });
    let counters_before = kernel_counters();
    let cpu_before = own_cpu();
    let started = Instant::now();
    let threads = config.threads.min(config.concurrency);
    let mut workers = Vec::with_capacity(threads);
    for index in 0..threads {
        // Share the concurrency out: 100 over 3 threads is 34, 33, 33.
        let slots =
            config.concurrency / threads + usize::from(index < config.concurrency % threads);
        let shared = Arc::clone(&shared);
        let target = config.target.clone();
        let expect = config.expect.clone();
        let timeout = config.timeout;
        let worker = thread::Builder::new()
            .name(format!("loadgen-{index}"))
            .spawn(move || event_loop(&target, &expect, slots, timeout, &shared))
            .context("cannot start a thread")?;
        workers.push(worker);
    }
    Ok(Running {
        shared,
        workers,
        idle,
        started,
        cpu_before,
        counters_before,
        server,
        config,
    })
}

impl Running {
    /// Requests finished so far (right or wrong).
    pub fn finished(&self) -> u64 {
        self.shared.finished.load(Ordering::Relaxed)
    }

    /// Whether every thread has ended.
    pub fn is_done(&self) -> bool {
        self.workers.iter().all(|w| w.is_finished())
    }

    /// Waits for the threads and sums up what they measured.
    pub fn finish(self, label: &str) -> anyhow::Result<Report> {
        let mut tally = Tally::new();
        for worker in self.workers {
            match worker.join() {
                Ok(part) => tally.merge(part),
                Err(_) => bail!("an event-loop thread panicked"),
            }
        }
        let elapsed = self.started.elapsed();
        let cpu = own_cpu().saturating_sub(self.cpu_before);
        let server_cpu = match self.server {
            Some((pids, before)) => Some(processes_cpu(&pids)?.saturating_sub(before)),
            None => None,
        };
        drop(self.idle);
        let kernel = kernel_counters()
            .into_iter()
            .map(|(name, after)| {
                let before = self.counters_before.get(&name).copied().unwrap_or(after);
                (name, after.saturating_sub(before))
            })
            .collect();
        let per_request = |cpu: Duration| {
            if tally.completed == 0 {
                0.0
            } else {
                cpu.as_secs_f64() * 1e6 / tally.completed as f64
            }
        };
        let h = &tally.latency;
        let failed = tally.errors.values().sum();
        Ok(Report {
            label: label.to_owned(),
            url: format!(
                "http://{}{}",
                self.config.target.host, self.config.target.path
            ),
            concurrency: self.config.concurrency,
            threads: self.config.threads,
            idle_held: self.config.idle,
            completed: tally.completed,
            failed,
            elapsed_s: elapsed.as_secs_f64(),
            requests_per_s: tally.completed as f64 / elapsed.as_secs_f64().max(1e-9),
            latency: Latency {
                p50_us: h.value_at_quantile(0.50),
                p90_us: h.value_at_quantile(0.90),
                p99_us: h.value_at_quantile(0.99),
                max_us: h.max(),
                mean_us: h.mean(),
            },
            client_cpu_us_per_request: per_request(cpu),
            server_cpu_us_per_request: server_cpu.map(per_request),
            errors: tally.errors,
            client: loadgen_name(),
            kernel,
        })
    }
}

/// Runs to the end without showing progress.
pub fn run(config: Config, server_pids: &[u32], label: &str) -> anyhow::Result<Report> {
    start(config, server_pids)?.finish(label)
}

/// Opens `count` connections and keeps them silent: the server holds each
/// in its interest list (or a thread, or an fd_set entry) while the run
/// measures what that costs it.
pub fn open_idle(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut idle = Vec::with_capacity(count);
    for opened in 0..count {
        let stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(10)).with_context(|| {
                format!(
                    "opened {opened} of {count} idle connections, then: (each needs a file \
                 descriptor here and at the server; see `ulimit -n`)"
                )
            })?;
        idle.push(stream);
    }
    Ok(idle)
}

/// How many file descriptors processes `pids` hold between them
/// (/proc/PID/fd); 0 for none.
fn descriptors(pids: &[u32]) -> usize {
    pids.iter()
        .map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count()))
        .sum()
}

/// One request with a blocking socket; Ok once the server has closed.
fn fence(target: &Target, timeout: Duration) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&target.addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(&target.request())?;
    io::copy(&mut stream, &mut io::sink())?;
    Ok(())
}

/// One connection slot of an event loop.
struct Slot {
    socket: Option<Socket>,
    /// Bytes of the request already written.
    written: usize,
    response: Vec<u8>,
    started: Instant,
}

/// One thread's loop: keeps `slots` requests in flight until the shared
/// budget runs out, then lets the last ones finish.
fn event_loop(
    target: &Target,
    expect: &Expect,
    slots: usize,
    timeout: Duration,
    shared: &Shared,
) -> Tally {
    let mut tally = Tally::new();
    let request = target.request();
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1");
    let mut slots: Vec<Slot> = (0..slots)
        .map(|_| Slot {
            socket: None,
            written: 0,
            response: Vec::with_capacity(512),
            started: Instant::now(),
        })
        .collect();
    let mut events = vec![EpollEvent::empty(); slots.len().max(1)];
    let mut scratch = [0u8; 4096];
    let mut budget_left = true;
    let mut last_sweep = Instant::now();

    for token in 0..slots.len() {
        budget_left = budget_left && begin(&epoll, &mut slots, token, target, shared, &mut tally);
    }
    while slots.iter().any(|s| s.socket.is_some()) {
        // Wake up at least every 100 ms to look for timed-out requests.
        let ready = match epoll.wait(&mut events, 100u16) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(err) => panic!("epoll_wait: {err}"),
        };
        for event in &events[..ready] {
            let token = event.data() as usize;
            let outcome = advance(&mut slots[token], event.events(), &request, &mut scratch);
            let Some(outcome) = outcome else { continue };
            finish(&mut slots[token], outcome, expect, &mut tally, shared);
            if budget_left {
                budget_left = begin(&epoll, &mut slots, token, target, shared, &mut tally);
            }
        }
        if last_sweep.elapsed() >= Duration::from_millis(100) {
            last_sweep = Instant::now();
            for token in 0..slots.len() {
                let slot = &mut slots[token];
                if slot.socket.is_some() && slot.started.elapsed() > timeout {
                    let timed_out = Err(io::ErrorKind::TimedOut.into());
                    finish(slot, timed_out, expect, &mut tally, shared);
                    if budget_left {
                        budget_left = begin(&epoll, &mut slots, token, target, shared, &mut tally);
                    }
                }
            }
        }
    }
    tally
}

/// Starts a request in slot `token` if the budget allows; returns false when
/// the budget is spent. A connect that fails at once is counted and retried
/// with the next request of the budget.
fn begin(
    epoll: &Epoll,
    slots: &mut [Slot],
    token: usize,
    target: &Target,
    shared: &Shared,
    tally: &mut Tally,
) -> bool {
    loop {
        if !shared.take() {
            return false;
        }
        let slot = &mut slots[token];
        slot.started = Instant::now();
        slot.written = 0;
        slot.response.clear();
        match connect(epoll, target.addr, token) {
            Ok(socket) => {
                slot.socket = Some(socket);
                return true;
            }
            Err(err) => {
                *tally.errors.entry(ErrorKind::of(&err)).or_default() += 1;
                shared.finished.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// socket(2) non-blocking, connect(2) (which returns EINPROGRESS at once:
/// the handshake goes on in the kernel), and one epoll_ctl(ADD) for both
/// directions, edge-triggered: EPOLLOUT when the handshake completes,
/// EPOLLIN when the answer arrives. No EPOLL_CTL_MOD ever, and no DEL: the
/// close at the end removes the fd from the interest list.
fn connect(epoll: &Epoll, addr: SocketAddr, token: usize) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), None)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(err) => return Err(err),
    }
    let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET;
    epoll.add(&socket, EpollEvent::new(interest, token as u64))?;
    Ok(socket)
}

/// Moves a request on after an event. Returns `Some` when it is over: the
/// whole response (up to the server's close) or the error that ended it.
fn advance(
    slot: &mut Slot,
    flags: EpollFlags,
    request: &[u8],
    scratch: &mut [u8],
) -> Option<io::Result<()>> {
    let socket = slot.socket.as_ref()?;
    if flags.contains(EpollFlags::EPOLLERR) {
        // The handshake failed (ECONNREFUSED) or the connection broke:
        // SO_ERROR says which.
        let err = socket
            .take_error()
            .ok()
            .flatten()
            .unwrap_or_else(|| io::ErrorKind::ConnectionReset.into());
        return Some(Err(err));
    }
    // Edge-triggered: write all we can, then read all there is.
    while slot.written < request.len() {
        match (&*socket).write(&request[slot.written..]) {
            Ok(n) => slot.written += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return None,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // ENOTCONN: EPOLLOUT has not come yet, the handshake is still
            // under way (a spurious EPOLLIN cannot happen before it).
            Err(err) if err.raw_os_error() == Some(libc::ENOTCONN) => return None,
            Err(err) => return Some(Err(err)),
        }
    }
    loop {
        match (&*socket).read(scratch) {
            // The server closed: the response is complete.
            Ok(0) => return Some(Ok(())),
            Ok(n) => {
                let room = MAX_RESPONSE.saturating_sub(slot.response.len());
                slot.response.extend_from_slice(&scratch[..n.min(room)]);
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return None,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Some(Err(err)),
        }
    }
}

/// Counts a finished request and closes its socket.
fn finish(
    slot: &mut Slot,
    outcome: io::Result<()>,
    expect: &Expect,
    tally: &mut Tally,
    shared: &Shared,
) {
    match outcome {
        Ok(()) if expect.accepts(&slot.response) => {
            let micros = slot.started.elapsed().as_micros();
            let micros = u64::try_from(micros)
                .unwrap_or(u64::MAX)
                .clamp(1, MAX_LATENCY_US);
            tally.latency.record(micros).expect("within bounds");
            tally.completed += 1;
        }
        Ok(()) => *tally.errors.entry(ErrorKind::WrongResponse).or_default() += 1,
        Err(err) => *tally.errors.entry(ErrorKind::of(&err)).or_default() += 1,
    }
    shared.finished.fetch_add(1, Ordering::Relaxed);
    if let Some(socket) = slot.socket.take() {
        // The server closed first (it sent FIN after the response), so this
        // close(2) does not leave the socket in TIME_WAIT here: the server's
        // side of the connection waits there instead, and our ephemeral
        // port is free again. On a timeout we close first; SO_LINGER is left
        // alone, so even then the close is an orderly FIN.
        drop(socket);
    }
}

/// CPU time (user + system) of this process, all threads, from
/// getrusage(2): microsecond resolution.
pub fn own_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage(RUSAGE_SELF)");
    let time = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    time(usage.user_time()) + time(usage.system_time())
}

/// CPU time (user + system) of process `pid` so far, all its threads,
/// living or ended, from /proc/PID/stat (utime and stime). The kernel
/// counts it in clock ticks (usually 10 ms), so a run should use at least
/// a few seconds of server CPU for a precise figure.
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = procfs::process::Process::new(pid as i32)
        .and_then(|process| process.stat())
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    Ok(ticks_to_duration(
        stat.utime + stat.stime,
        procfs::ticks_per_second(),
    ))
}

/// The CPU time of several processes, summed.
fn processes_cpu(pids: &[u32]) -> anyhow::Result<Duration> {
    pids.iter().map(|&pid| process_cpu(pid)).sum()
}

/// `ticks` clock ticks, at `per_second` ticks a second.
fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    Duration::from_micros(ticks * 1_000_000 / per_second.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!";

    #[test]
    fn parses_urls() {
        let t = Target::parse("http://127.0.0.1:8080/x/y").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "/x/y")
        );
        let t = Target::parse("http://127.0.0.1:9").unwrap();
        assert_eq!(t.path, "/");
        let t = Target::parse("http://[::1]:8080/").unwrap();
        assert_eq!(t.addr, "[::1]:8080".parse().unwrap());
        let t = Target::parse("http://127.0.0.1/").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert!(Target::parse("https://127.0.0.1/").is_err());
        assert!(Target::parse("http:///").is_err());
    }

    #[test]
    fn request_is_http_1_0_with_host() {
        let t = Target::parse("http://127.0.0.1:8080/a").unwrap();
        let request = String::from_utf8(t.request()).unwrap();
        assert!(request.starts_with("GET /a HTTP/1.0\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(request.ends_with("\r\n\r\n"));
    }

    #[test]
    fn checks_status_and_body() {
        let any_body = Expect {
            status: 200,
            body: None,
        };
        assert!(any_body.accepts(OK));
        assert!(any_body.accepts(b"HTTP/1.1 200 OK\r\n\r\n"));
        assert!(!any_body.accepts(b"HTTP/1.0 431 Too Large\r\n\r\nx"));
        assert!(
            !any_body.accepts(b"HTTP/1.0 200 OK\r\nContent-Le"),
            "cut headers"
        );
        assert!(!any_body.accepts(b""));
        assert!(!any_body.accepts(b"SSH-2.0 200\r\n\r\n"));
        let hello = Expect {
            status: 200,
            body: Some(b"Hello, world!".to_vec()),
        };
        assert!(hello.accepts(OK));
        assert!(
            !hello.accepts(b"HTTP/1.0 200 OK\r\n\r\nHello, world"),
            "cut body"
        );
    }

    #[test]
    fn sorts_errors() {
        let of = |kind: io::ErrorKind| ErrorKind::of(&kind.into());
        assert_eq!(of(io::ErrorKind::ConnectionRefused), ErrorKind::Refused);
        assert_eq!(of(io::ErrorKind::ConnectionReset), ErrorKind::Reset);
        assert_eq!(of(io::ErrorKind::BrokenPipe), ErrorKind::Reset);
        assert_eq!(of(io::ErrorKind::TimedOut), ErrorKind::Timeout);
        assert_eq!(of(io::ErrorKind::AddrNotAvailable), ErrorKind::Other);
    }

    /// Clock ticks become time at the kernel's rate; our own CPU time, as
    /// /proc counts it, grows with work and stays close to getrusage's.
    #[test]
    fn reads_cpu_time_from_stat() {
        assert_eq!(ticks_to_duration(200, 100), Duration::from_secs(2));
        assert_eq!(ticks_to_duration(3, 1000), Duration::from_millis(3));
        let before = process_cpu(std::process::id()).unwrap();
        // 300 ms of CPU: 30 ticks at 100 a second.
        let start = own_cpu();
        let mut spin = 0u64;
        while own_cpu() - start < Duration::from_millis(300) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let after = process_cpu(std::process::id()).unwrap();
        let (used, rusage) = (after - before, own_cpu() - start);
        assert!(
            used >= Duration::from_millis(200) && used <= rusage + Duration::from_millis(100),
            "/proc counted {used:?} where getrusage counted {rusage:?}"
        );
    }

    #[test]
    fn reads_tcp_counters_from_netstat() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\n\
                    TcpExt: 0 7 9 12\n\
                    IpExt: InNoRoutes\n\
                    IpExt: 0\n";
        let counters = parse_netstat(text);
        assert_eq!(counters.get("ListenOverflows"), Some(&7));
        assert_eq!(counters.get("ListenDrops"), Some(&9));
        assert_eq!(counters.get("TCPSynRetrans"), Some(&12));
        assert_eq!(counters.len(), 3);
    }

    #[test]
    fn count_budget_is_exact_across_threads() {
        let shared = Arc::new(Shared {
            left: AtomicI64::new(1000),
            deadline: None,
            finished: AtomicU64::new(0),
        });
        let taken: u64 = (0..4)
            .map(|_| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || (0..600).filter(|_| shared.take()).count() as u64)
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(taken, 1000);
    }

    #[test]
    fn refused_connections_are_counted_not_fatal() {
        // Bind a port, then close it: nothing listens there now.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = Config {
            target: Target::parse(&format!("http://{addr}/")).unwrap(),
            concurrency: 4,
            amount: Amount::Requests(20),
            threads: 2,
            idle: 0,
            timeout: Duration::from_secs(20),
            expect: Expect {
                status: 200,
                body: None,
            },
        };
        let report = run(config, &[], "refused").unwrap();
        assert_eq!(report.completed, 0);
        assert_eq!(report.errors.get(&ErrorKind::Refused), Some(&20));
    }
}
