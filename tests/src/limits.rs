//! Resource limits: RLIMIT_NOFILE for the tests and for the servers they
//! start.

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use procfs::{Current, LoadAverage, Meminfo};

/// Raises this process's soft limit on open files to at least `wanted`, up
/// to the hard limit. Returns the new soft limit, or an explanation when the
/// hard limit is too low (raising it needs root or a higher `ulimit -Hn`).
pub fn raise_nofile(wanted: u64) -> Result<u64, String> {
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|err| format!("getrlimit: {err}"))?;
    if soft >= wanted {
        return Ok(soft);
    }
    if hard < wanted {
        return Err(format!(
            "needs {wanted} open files but the hard limit is {hard} (raise it with `ulimit -Hn {wanted}` as root)"
        ));
    }
    setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).map_err(|err| format!("setrlimit: {err}"))?;
    Ok(wanted)
}

/// This process's soft limit on open files.
pub fn nofile() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE)
        .expect("getrlimit(RLIMIT_NOFILE)")
        .0
}

/// Makes `command` start its process with at most `max` open files
/// (soft and hard limit), as `ulimit -n max` would.
pub fn limit_nofile(command: &mut Command, max: u64) {
    limit(command, Resource::RLIMIT_NOFILE, max);
}

/// Makes `command` start its process with at most `bytes` of address space
/// (RLIMIT_AS, soft and hard), as `ulimit -v` would: each thread's stack is
/// a mapping, so past it no thread can start.
pub fn limit_address_space(command: &mut Command, bytes: u64) {
    limit(command, Resource::RLIMIT_AS, bytes);
}

fn limit(command: &mut Command, resource: Resource, max: u64) {
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed; setrlimit(2) is one, nix's
    // wrapper only calls it, and the closure allocates nothing.
    unsafe {
        command.pre_exec(move || Ok(setrlimit(resource, max, max)?));
    }
}

/// Whether this machine lets one process run `wanted` more threads: the
/// kernel's limits on threads (kernel.threads-max, and RLIMIT_NPROC, which
/// counts every thread of the user), on memory mappings (each thread's
/// stack and its guard page are two), and the memory its stacks will touch.
/// An explanation of the first limit short of it when not.
pub fn room_for_threads(wanted: u64) -> Result<(), String> {
    // /proc/loadavg's fourth field is `running/total` scheduling entities:
    // every thread on the machine, the best cheap count of what is in use.
    let threads_now = u64::from(
        LoadAverage::current()
            .map_err(|err| format!("/proc/loadavg: {err}"))?
            .max,
    );
    let threads_max = u64::from(
        procfs::sys::kernel::threads_max()
            .map_err(|err| format!("/proc/sys/kernel/threads-max: {err}"))?,
    );
    if threads_now + wanted > threads_max {
        return Err(format!(
            "kernel.threads-max is {threads_max} and {threads_now} threads run already"
        ));
    }
    let (nproc, _) =
        getrlimit(Resource::RLIMIT_NPROC).map_err(|err| format!("getrlimit: {err}"))?;
    if nproc != libc::RLIM_INFINITY {
        // RLIMIT_NPROC counts the threads of our user (real uid) only: on a
        // shared machine the others' threads may exceed it.
        let ours = user_threads();
        if ours + wanted > nproc {
            return Err(format!(
                "RLIMIT_NPROC (ulimit -u) is {nproc} and this user runs {ours} threads already"
            ));
        }
    }
    let max_map_count = procfs::sys::vm::max_map_count()
        .map_err(|err| format!("/proc/sys/vm/max_map_count: {err}"))?;
    if 2 * wanted + 1_000 > max_map_count {
        return Err(format!(
            "vm.max_map_count is {max_map_count}: too few for {wanted} stacks and guard pages"
        ));
    }
    // Each idle thread touches about 10 KiB (measured by
    // tests/tests/threads.rs); ask for ten times that.
    let available = Meminfo::current()
        .map_err(|err| format!("/proc/meminfo: {err}"))?
        .mem_available
        .ok_or("no MemAvailable in /proc/meminfo")?;
    if available < wanted * 100 * 1024 {
        return Err(format!(
            "only {} MiB of memory available",
            available / (1024 * 1024)
        ));
    }
    Ok(())
}

/// How many threads the processes of our real user id run, from the `Uid`
/// and `Threads` lines of each /proc/PID/status (a process that ends
/// during the count is skipped).
fn user_threads() -> u64 {
    let uid = nix::unistd::getuid().as_raw();
    let Ok(processes) = procfs::process::all_processes() else {
        return 0;
    };
    processes
        .flatten()
        .filter_map(|process| process.status().ok())
        .filter(|status| status.ruid == uid)
        .map(|status| status.threads)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request far past kernel.threads-max is refused, naming that
    /// limit; one more thread fits.
    #[test]
    fn no_machine_has_room_for_a_trillion_threads() {
        let why = room_for_threads(1 << 40).unwrap_err();
        assert!(why.contains("threads-max"), "{why}");
        assert_eq!(room_for_threads(1), Ok(()));
    }

    /// Our user's thread count includes at least this process's threads.
    #[test]
    fn our_threads_are_counted() {
        let here = crate::process::threads(std::process::id());
        assert!(here >= 1);
        assert!(user_threads() >= here, "{} < {here}", user_threads());
    }
}
