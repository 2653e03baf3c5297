//! The load generator against a real example: a short run, no errors, and a
//! JSON report that scripts can read. (Speed belongs in the benchmarks, not
//! here: nothing below depends on how fast the machine is.)

use std::process::Command;

use loadgen::{ErrorKind, Report};
use tests::{Server, binary};

/// Runs the loadgen binary with `args`; its JSON report.
fn loadgen(args: &[&str]) -> Report {
    let output = Command::new(binary("loadgen"))
        .args(args)
        .output()
        .expect("run loadgen");
    assert!(
        output.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 JSON");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|err| panic!("{err}: {stdout}"))
}

/// 200 requests, 20 at a time, from 2 threads, with 10 idle connections
/// held: every one answered with the tutorial's body, and the server's CPU
/// time measured.
#[test]
fn smoke_run_against_example04() {
    let server = Server::start("example04_epoll_edge", &["--quiet"]);
    let url = format!("http://{}/", server.addr());
    let pid = server.pid().to_string();
    let report = loadgen(&[
        "-c",
        "20",
        "-n",
        "200",
        "-t",
        "2",
        "--idle",
        "10",
        "--json",
        "--label",
        "smoke",
        "--expect-body",
        "Hello, world!",
        "--server-pid",
        &pid,
        &url,
    ]);
    assert_eq!(report.completed, 200, "errors: {:?}", report.errors);
    assert_eq!(report.failed, 0);
    assert!(report.errors.is_empty());
    assert_eq!(report.label, "smoke");
    assert_eq!(report.idle_held, 10);
    let l = &report.latency;
    assert!(0 < l.p50_us && l.p50_us <= l.p90_us && l.p90_us <= l.p99_us && l.p99_us <= l.max_us);
    assert!(report.requests_per_s > 0.0);
    assert!(report.server_cpu_us_per_request.is_some());
}

/// A body check that the server cannot pass: every response counts as a
/// wrong response, none as completed. (Proves the check is not hollow.)
#[test]
fn wrong_body_is_reported_as_wrong_response() {
    let server = Server::start("example04_epoll_edge", &["--quiet"]);
    let url = format!("http://{}/", server.addr());
    let report = loadgen(&[
        "-c",
        "5",
        "-n",
        "20",
        "--json",
        "--expect-body",
        "Goodbye",
        &url,
    ]);
    assert_eq!(report.completed, 0);
    assert_eq!(report.errors.get(&ErrorKind::WrongResponse), Some(&20));
}
