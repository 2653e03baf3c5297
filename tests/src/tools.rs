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

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

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
    let leader = Pid::from_raw(child.id() as i32);
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
    // waitid(2) with WNOWAIT: has the command exited? Asked without reaping
    // it (try_wait would), so that its pid, which names the group, cannot
    // go to another process before the group is killed below.
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    let finished = loop {
        match waitid(Id::Pid(leader), flags) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            Ok(WaitStatus::StillAlive) => break false,
            Ok(_) => break true,
            Err(Errno::EINTR) => {}
            Err(err) => panic!("waitid for {command:?}: {err}"),
        }
    };
    // killpg(2): whatever the command started and left behind, and the
    // command itself if it is still running.
    let _ = killpg(leader, Signal::SIGKILL);
    let output = Output {
        status: child.wait().expect("wait for the child"),
        stdout: stdout.join().expect("the stdout reader"),
        stderr: stderr.join().expect("the stderr reader"),
    };
    assert!(
        finished,
        "{command:?} did not finish within {limit:?}; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command that finishes is reported with its output; what it left
    /// running in its group is killed.
    #[test]
    fn a_finished_command_leaves_nothing_running() {
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 100 >/dev/null 2>&1 & echo $!"]);
        let output = output_within(&mut command, crate::client::PATIENCE);
        assert!(output.status.success(), "{output:?}");
        let pid: i32 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap();
        let gone = || {
            procfs::process::Process::new(pid)
                .and_then(|process| process.stat())
                .map_or(true, |stat| stat.state == 'Z')
        };
        assert!(
            crate::wait_until(crate::client::PATIENCE, gone),
            "the command's `sleep 100` (pid {pid}) still runs"
        );
    }

    /// A command still running at its limit is killed, and the test fails
    /// saying so, at once rather than when the command would have ended.
    #[test]
    fn a_command_past_its_limit_is_killed_and_reported() {
        let started = Instant::now();
        let failure = std::panic::catch_unwind(|| {
            output_within(Command::new("sleep").arg("100"), Duration::from_millis(200))
        })
        .expect_err("a command past its limit was reported as finished");
        assert!(started.elapsed() < crate::client::PATIENCE);
        let message = failure.downcast_ref::<String>().unwrap();
        assert!(message.contains("did not finish within"), "{message}");
    }
}
