//! Outside programs some tests need (a browser, strace, mdbook), and what a
//! test does when one is missing.
//!
//! `.ci/run` installs each of them, so under CI (`CI=true`) a missing tool
//! is a failure: a test that silently skipped in CI would prove nothing.
//! On a developer's machine the test skips instead, with a banner that
//! says what to install.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Whether we run under CI (`CI=true`, as `.ci/run` is run there).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// Whether `program args...` runs and exits 0. If not, panics under CI
/// and otherwise prints why the calling test skips (`needed_for`) and how
/// to install the program (`install`), and returns false.
pub fn runs_or_skip(program: &str, args: &[&str], needed_for: &str, install: &str) -> bool {
    let works = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if works {
        return true;
    }
    let tried = format!("{program} {}", args.join(" "));
    if under_ci() {
        panic!("`{tried}` failed, and CI=true: .ci/run should have installed {program}");
    }
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !! SKIPPED: {needed_for} needs `{program}`, and `{tried}` failed.\n\
         !! Install it: {install}\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    false
}

/// A fresh directory under the system's temporary directory, removed with
/// everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory whose name starts with `label`.
    pub fn new(label: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos();
        let name = format!("{label}-{}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `command` to its end, in its own process group, and returns what it
/// printed. Panics if it has not finished within `limit`; the whole group
/// (the command and anything it started) is killed in any case.
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
    let group = child.id() as libc::pid_t;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("a stdout pipe")));
    let stderr = drain(Box::new(child.stderr.take().expect("a stderr pipe")));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    // SAFETY: kill(2) on the process group we created; its leader is our
    // child, not reaped until the wait below, so the id is not reused.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let waited = child.wait();
    let output = Output {
        status: status.unwrap_or_else(|| waited.expect("wait for the child")),
        stdout: stdout.join().expect("the stdout reader"),
        stderr: stderr.join().expect("the stderr reader"),
    };
    assert!(
        status.is_some(),
        "{command:?} did not finish within {limit:?}; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
