//! The servers compared on the same work, with criterion:
//!
//! - `latency`: one client, sequential requests, a new connection each;
//! - `throughput_c100`: 100 clients at once (loadgen's event loop), one
//!   request per connection;
//! - `idle_scaling`: the same 100 clients while 0, 1,000 or 10,000 other
//!   connections are held open and silent. An epoll server's cost does not
//!   depend on how many sockets it watches, only on how many are ready;
//!   select and poll hand the kernel the whole list on every call.
//!
//! Each server starts once per group (built in release, `--quiet`). Run it
//! with `cargo bench -p tests --bench servers` (a few minutes); pick one
//! group with `cargo bench -p tests --bench servers -- idle_scaling`. The
//! HTML report is in target/criterion/report/index.html.
//!
//! On 2 cores the load generator and the server share the machine, so
//! requests per second separate the servers less than their CPU time does:
//! `idle_scaling` also prints each server's CPU time per request, read from
//! /proc/PID/stat over the whole benchmark.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use loadgen::{Amount, Config, Expect, Target};
use tests::{GET, RESPONSE, Server, request};

/// Idle connections held in `idle_scaling`.
const IDLE: [usize; 3] = [0, 1_000, 10_000];

/// Clients at once in the throughput groups.
const CONCURRENCY: usize = 100;

/// A server to compare: a name for the report, its binary, its arguments.
struct Contender {
    name: &'static str,
    binary: &'static str,
    args: &'static [&'static str],
    /// The most connections it can watch (select: fds below FD_SETSIZE).
    max_connections: usize,
}

/// The servers to compare: the epoll examples, and the thread-per-connection
/// and select/poll servers when their packages exist.
fn contenders() -> Vec<Contender> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let exists = |package: &str| workspace.join(package).join("Cargo.toml").exists();
    let mut all: Vec<Contender> = tests::CONCURRENT_SERVERS
        .iter()
        .map(|&name| Contender {
            name,
            binary: name,
            args: &["--quiet"],
            max_connections: usize::MAX,
        })
        .collect();
    if exists("example07_threads") {
        all.push(Contender {
            name: "example07_threads",
            binary: "example07_threads",
            // One thread per connection, idle ones included: allow enough
            // threads for the largest idle count, or the clients get 503.
            args: &["--quiet", "--max-threads", "11000"],
            max_connections: usize::MAX,
        });
    }
    if exists("example08_select_poll") {
        all.push(Contender {
            name: "example08_select",
            binary: "example08_select_poll",
            args: &["--quiet", "--poller", "select"],
            // fds 0-2, the listener, the signalfd: the rest of 1024.
            max_connections: 1000,
        });
        all.push(Contender {
            name: "example08_poll",
            binary: "example08_select_poll",
            args: &["--quiet", "--poller", "poll"],
            max_connections: usize::MAX,
        });
    }
    if exists("example11_timeouts") {
        all.push(Contender {
            name: "example11_timeouts",
            binary: "example11_timeouts",
            // Longer than any group runs: the idle connections stay, and
            // idle_scaling measures requests with that many deadlines
            // pending.
            args: &["--quiet", "--request-timeout", "600"],
            max_connections: usize::MAX,
        });
    }
    all
}

/// How a group samples: every group's settings are here.
struct Sampling {
    samples: usize,
    warm_up: Duration,
    measurement: Duration,
}

/// One request per iteration: criterion's 100 samples fit in 2 s.
const ONE_REQUEST: Sampling = Sampling {
    samples: 100,
    warm_up: Duration::from_millis(500),
    measurement: Duration::from_secs(2),
};

/// A whole loadgen run per iteration: 10 samples (criterion's least) of
/// 3 s keep a group of eight servers within minutes.
const UNDER_LOAD: Sampling = Sampling {
    samples: 10,
    warm_up: Duration::from_secs(1),
    measurement: Duration::from_secs(3),
};

/// A benchmark group sampled as `sampling` says, each iteration counted as
/// one request (so criterion reports requests per second).
fn group<'a>(c: &'a mut Criterion, name: &str, sampling: Sampling) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(sampling.samples)
        .warm_up_time(sampling.warm_up)
        .measurement_time(sampling.measurement)
        .throughput(Throughput::Elements(1));
    group
}

fn start(contender: &Contender) -> Server {
    Server::start(contender.binary, contender.args)
}

/// `requests` requests from 100 clients at once; the wall time they took.
fn load(addr: SocketAddr, requests: u64) -> (Duration, loadgen::Report) {
    let config = Config {
        target: Target::parse(&format!("http://{addr}/")).unwrap(),
        concurrency: CONCURRENCY,
        amount: Amount::Requests(requests),
        threads: 1,
        idle: 0,
        timeout: Duration::from_secs(10),
        expect: Expect {
            status: 200,
            body: Some(b"Hello, world!".to_vec()),
        },
    };
    let started = Instant::now();
    let report = loadgen::run(config, &[], "").expect("a loadgen run");
    (started.elapsed(), report)
}

fn latency(c: &mut Criterion) {
    let mut group = group(c, "latency", ONE_REQUEST);
    for contender in contenders() {
        let server = start(&contender);
        group.bench_function(contender.name, |b| {
            b.iter(|| assert_eq!(std::hint::black_box(request(server.addr(), GET)), RESPONSE));
        });
    }
    group.finish();
}

fn throughput(c: &mut Criterion) {
    let mut group = group(c, "throughput_c100", UNDER_LOAD);
    for contender in contenders() {
        let server = start(&contender);
        group.bench_function(contender.name, |b| {
            b.iter_custom(|requests| {
                let (took, report) = load(server.addr(), requests);
                assert_eq!(report.failed, 0, "{}: {:?}", contender.name, report.errors);
                took
            });
        });
    }
    group.finish();
}

fn idle_scaling(c: &mut Criterion) {
    let wanted = IDLE.iter().max().unwrap() + CONCURRENCY + 256;
    // The servers inherit this process's limit, so one raise covers both
    // ends of the idle connections.
    let limit = match tests::limits::raise_nofile(wanted as u64) {
        Ok(limit) => limit,
        Err(why) => {
            eprintln!("idle_scaling: {why}; running only the idle counts that fit");
            tests::limits::nofile()
        }
    };
    let mut group = group(c, "idle_scaling", UNDER_LOAD);
    for contender in contenders() {
        let name = contender.name;
        let server = start(&contender);
        let addr = server.addr();
        for idle in IDLE {
            if idle + CONCURRENCY > contender.max_connections {
                eprintln!(
                    "idle_scaling/{name}/{idle}: skipped, it watches at most {} connections",
                    contender.max_connections
                );
                continue;
            }
            if (idle + CONCURRENCY + 256) as u64 > limit {
                eprintln!("idle_scaling/{name}/{idle}: skipped, needs `ulimit -n {wanted}`");
                continue;
            }
            let held = match loadgen::open_idle(addr, idle) {
                Ok(held) => held,
                Err(err) => {
                    eprintln!("idle_scaling/{name}/{idle}: skipped: {err:#}");
                    continue;
                }
            };
            let cpu_before = loadgen::process_cpu(server.pid()).unwrap();
            let mut served = 0u64;
            let mut failed = 0u64;
            group.bench_with_input(BenchmarkId::new(name, idle), &idle, |b, _| {
                b.iter_custom(|requests| {
                    let (took, report) = load(addr, requests);
                    served += report.completed;
                    failed += report.failed;
                    took
                });
            });
            let cpu = loadgen::process_cpu(server.pid()).unwrap() - cpu_before;
            eprintln!(
                "idle_scaling/{name}/{idle}: server CPU {:.1} µs per request over {served} requests{}",
                cpu.as_secs_f64() * 1e6 / served.max(1) as f64,
                if failed > 0 {
                    format!(", {failed} FAILED")
                } else {
                    String::new()
                }
            );
            drop(held);
        }
    }
    group.finish();
}

criterion_group!(benches, latency, throughput, idle_scaling);
criterion_main!(benches);
