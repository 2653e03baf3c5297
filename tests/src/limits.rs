//! Resource limits: RLIMIT_NOFILE for the tests and for the servers they
//! start.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Raises this process's soft limit on open files to at least `wanted`, up
/// to the hard limit. Returns the new soft limit, or an explanation when the
/// hard limit is too low (raising it needs root or a higher `ulimit -Hn`).
pub fn raise_nofile(wanted: u64) -> Result<u64, String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
        }
        if limit.rlim_cur >= wanted {
            return Ok(limit.rlim_cur);
        }
        if limit.rlim_max < wanted {
            return Err(format!(
                "needs {wanted} open files but the hard limit is {} (raise it with `ulimit -Hn {wanted}` as root)",
                limit.rlim_max
            ));
        }
        limit.rlim_cur = wanted;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(wanted)
}

/// Makes `command` start its process with at most `max` open files
/// (soft and hard limit), as `ulimit -n max` would.
pub fn limit_nofile(command: &mut Command, max: u64) {
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed; setrlimit is one, and the
    // closure allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: max,
                rlim_max: max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Whether this machine lets one process run `wanted` more threads: the
/// kernel's limits on threads (kernel.threads-max, and RLIMIT_NPROC, which
/// counts every thread of the user), on memory mappings (each thread's
/// stack and its guard page are two), and the memory its stacks will touch.
/// An explanation of the first limit short of it when not.
pub fn room_for_threads(wanted: u64) -> Result<(), String> {
    let read = |path: &str| -> Result<u64, String> {
        let text = std::fs::read_to_string(path).map_err(|err| format!("{path}: {err}"))?;
        text.split_whitespace()
            .next()
            .and_then(|word| word.parse().ok())
            .ok_or_else(|| format!("{path}: no number in {text:?}"))
    };
    // /proc/loadavg's fourth field is `running/total` scheduling entities:
    // every thread on the machine, the best cheap count of what is in use.
    let loadavg = std::fs::read_to_string("/proc/loadavg").map_err(|err| err.to_string())?;
    let threads_now: u64 = loadavg
        .split_whitespace()
        .nth(3)
        .and_then(|field| field.split('/').nth(1)?.parse().ok())
        .ok_or("cannot read the thread count in /proc/loadavg")?;
    let threads_max = read("/proc/sys/kernel/threads-max")?;
    if threads_now + wanted > threads_max {
        return Err(format!(
            "kernel.threads-max is {threads_max} and {threads_now} threads run already"
        ));
    }
    let mut nproc = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut nproc) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if nproc.rlim_cur != libc::RLIM_INFINITY {
        // RLIMIT_NPROC counts the threads of our user (real uid) only: on a
        // shared machine the others' threads may exceed it.
        let ours = user_threads();
        if ours + wanted > nproc.rlim_cur {
            return Err(format!(
                "RLIMIT_NPROC (ulimit -u) is {} and this user runs {ours} threads already",
                nproc.rlim_cur
            ));
        }
    }
    let max_map_count = read("/proc/sys/vm/max_map_count")?;
    if 2 * wanted + 1_000 > max_map_count {
        return Err(format!(
            "vm.max_map_count is {max_map_count}: too few for {wanted} stacks and guard pages"
        ));
    }
    // MemAvailable, in KiB. Each idle thread touches about 10 KiB (measured
    // by tests/tests/threads.rs); ask for ten times that.
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(|err| err.to_string())?;
    let available_kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .ok_or("no MemAvailable in /proc/meminfo")?;
    if available_kib < wanted * 100 {
        return Err(format!(
            "only {} MiB of memory available",
            available_kib / 1024
        ));
    }
    Ok(())
}

/// How many threads the processes of our real user id run, from the `Uid`
/// and `Threads` lines of each /proc/PID/status (a process that ends
/// during the count is skipped).
fn user_threads() -> u64 {
    // SAFETY: getuid cannot fail and touches no memory of ours.
    let uid = unsafe { libc::getuid() }.to_string();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut threads = 0;
    for process in processes.flatten() {
        let Ok(status) = std::fs::read_to_string(process.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.split_whitespace().next())
        };
        if field("Uid:") == Some(uid.as_str()) {
            threads += field("Threads:").and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    threads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_machine_has_room_for_a_trillion_threads() {
        let why = room_for_threads(1 << 40).unwrap_err();
        assert!(why.contains("threads-max"), "{why}");
        assert_eq!(room_for_threads(1), Ok(()));
    }

    #[test]
    fn our_threads_are_counted() {
        // This test runs in one thread of this process, at least.
        let ours = std::fs::read_to_string("/proc/self/status").unwrap();
        let here: u64 = ours
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap();
        assert!(user_threads() >= here, "{} < {here}", user_threads());
    }
}
