//! `loadgen`: load an example server with one request per connection and
//! report requests/s, latency percentiles and errors by kind.
//!
//! ```sh
//! cargo run --release -p example04_epoll_edge -- --quiet &
//! cargo run --release -p loadgen -- -c 100 -n 20000 http://127.0.0.1:8080/
//! ```

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use loadgen::{Amount, Config, Expect, Report, Target};

/// Load an HTTP server with one request per connection (HTTP/1.0), from a
/// few threads each running an epoll loop, and report requests/s, latency
/// percentiles and errors by kind.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The URL to request, `http://IP:PORT/PATH`.
    url: String,

    /// Requests in flight at once (each on its own connection).
    #[arg(short = 'c', long, default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,

    /// Requests in all.
    #[arg(
        short = 'n',
        long,
        default_value_t = 20_000,
        value_name = "N",
        conflicts_with = "duration"
    )]
    requests: u64,

    /// Run for this many seconds instead of a number of requests.
    #[arg(short = 'd', long, value_name = "SECONDS")]
    duration: Option<f64>,

    /// Event-loop threads. One keeps up with the examples on a 2-core
    /// machine and leaves the other core to the server.
    #[arg(short = 't', long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    threads: u64,

    /// Hold this many connections open, silent, for the whole run.
    #[arg(long, default_value_t = 0, value_name = "N")]
    idle: usize,

    /// Seconds a request may take before it counts as a timeout.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    timeout: f64,

    /// The status code a right response carries.
    #[arg(long, default_value_t = 200, value_name = "CODE")]
    expect_status: u16,

    /// The body a right response carries, exactly (by default any body).
    #[arg(long, value_name = "TEXT")]
    expect_body: Option<String>,

    /// Also measure this process's CPU time per request (the server's PID).
    /// A server of several processes (nginx's workers): their PIDs,
    /// comma-separated, and their CPU time is summed.
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    server_pid: Vec<u32>,

    /// A name for this run, kept in the JSON report.
    #[arg(long, default_value = "", value_name = "NAME")]
    label: String,

    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seconds = |s: f64, what: &str| {
        Duration::try_from_secs_f64(s).with_context(|| format!("{what}: {s} is not a duration"))
    };
    let amount = match args.duration {
        Some(d) => Amount::Duration(seconds(d, "--duration")?),
        None => Amount::Requests(args.requests),
    };
    let config = Config {
        target: Target::parse(&args.url)?,
        concurrency: args.concurrency as usize,
        amount,
        threads: args.threads as usize,
        idle: args.idle,
        timeout: seconds(args.timeout, "--timeout")?,
        expect: Expect {
            status: args.expect_status,
            body: args.expect_body.map(String::into_bytes),
        },
    };
    // Each connection, idle or busy, is a file descriptor here.
    raise_nofile(args.idle as u64 + args.concurrency + 64);

    let running = loadgen::start(config, &args.server_pid)?;
    if std::io::stdout().is_terminal() && !args.json {
        let bar = match amount {
            Amount::Requests(n) => ProgressBar::new(n),
            Amount::Duration(_) => ProgressBar::new_spinner(),
        };
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} requests, {per_sec}, {elapsed}")
                .expect("a valid template"),
        );
        while !running.is_done() {
            bar.set_position(running.finished());
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
    }
    let report = running.finish(&args.label)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

fn print_text(r: &Report) {
    println!(
        "{} requests to {} in {:.2} s",
        r.completed + r.failed,
        r.url,
        r.elapsed_s
    );
    println!(
        "concurrency {}, {} thread(s), {} idle connections held",
        r.concurrency, r.threads, r.idle_held
    );
    println!("requests/s:  {:.0}", r.requests_per_s);
    let l = &r.latency;
    println!(
        "latency (us): p50 {}  p90 {}  p99 {}  max {}  mean {:.0}",
        l.p50_us, l.p90_us, l.p99_us, l.max_us, l.mean_us
    );
    println!(
        "loadgen CPU per request: {:.1} us",
        r.client_cpu_us_per_request
    );
    if let Some(cpu) = r.server_cpu_us_per_request {
        println!("server CPU per request:  {cpu:.1} us");
    }
    if !r.kernel.is_empty() {
        let grew: Vec<String> = r.kernel.iter().map(|(k, n)| format!("{k} +{n}")).collect();
        println!("kernel TCP counters (whole machine): {}", grew.join(", "));
    }
    if r.failed == 0 {
        println!("errors: none");
    } else {
        let kinds: Vec<String> = r.errors.iter().map(|(k, n)| format!("{k:?} {n}")).collect();
        println!("errors: {} ({})", r.failed, kinds.join(", "));
    }
}

/// Raises the soft limit on open files towards `wanted` (never above the
/// hard limit), and says so when it cannot reach it.
fn raise_nofile(wanted: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= wanted {
        return;
    }
    if hard < wanted {
        eprintln!(
            "loadgen: needs {wanted} open files but the hard limit is {hard}; \
             raise it (as root: `ulimit -Hn {wanted}`) or hold fewer --idle"
        );
    }
    let _ = setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard);
}
