//! What /proc says about a running server.

use std::fs;
use std::time::Duration;

/// How many file descriptors process `pid` has open.
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or_else(|err| panic!("cannot list /proc/{pid}/fd: {err}"))
}

/// What each open fd of process `pid` is (`3 -> socket:[1234]`), for
/// failure messages.
pub fn fd_targets(pid: u32) -> Vec<String> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .map(|entry| {
            let target = fs::read_link(entry.path()).unwrap_or_default();
            format!(
                "{} -> {}",
                entry.file_name().to_string_lossy(),
                target.display()
            )
        })
        .collect()
}

/// A field of /proc/PID/status in its first unit (`Threads`, `VmRSS` in
/// KiB, ...).
pub fn status_field(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|err| panic!("cannot read /proc/{pid}/status: {err}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// How many threads process `pid` runs.
pub fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads")
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS")
}

/// The fields of /proc/PID/stat after the command name, from field 3 (the
/// state) on. The name (field 2) may hold spaces and parentheses; the
/// fields after its last closing parenthesis are plain.
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|err| panic!("cannot read /proc/{pid}/stat: {err}"));
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 1..];
    after_name.split_whitespace().map(str::to_owned).collect()
}

/// The state letter of process `pid` (`R` running, `S` sleeping, `T`
/// stopped, `Z` zombie, ...).
pub fn state(pid: u32) -> char {
    stat_fields(pid)[0].chars().next().unwrap()
}

/// CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    // utime and stime are fields 14 and 15.
    let fields = stat_fields(pid);
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Where each thread of process `pid` sleeps in the kernel
/// (/proc/PID/task/TID/wchan), for failure messages: a function name such
/// as `anon_pipe_write` or `do_sys_poll`, or `0` for a thread that is
/// running, or when the kernel hides it.
pub fn wchans(pid: u32) -> Vec<String> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("wchan")).ok())
        .collect()
}

/// How long the threads of process `pid` have been on a CPU, and how long
/// runnable but waiting for one on a runqueue, so far: the first two
/// fields of /proc/PID/task/TID/schedstat, in ns, summed over its threads.
pub fn run_and_wait(pid: u32) -> (Duration, Duration) {
    let (mut run, mut wait) = (0, 0);
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|err| panic!("cannot list /proc/{pid}/task: {err}"));
    for task in tasks.flatten() {
        // A thread that has just exited has no schedstat any more.
        let Ok(stat) = fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        let mut fields = stat.split_whitespace().map(|field| field.parse::<u64>());
        if let (Some(Ok(on_cpu)), Some(Ok(waiting))) = (fields.next(), fields.next()) {
            run += on_cpu;
            wait += waiting;
        }
    }
    (Duration::from_nanos(run), Duration::from_nanos(wait))
}

/// Asserts that process `pid` does not spin over the next second: it uses
/// under 300 ms of CPU time, and is on a CPU or waiting for one (runnable)
/// under 500 ms of it. A server that waits (blocked, or pausing between
/// retries) does neither; a busy loop is runnable all the time. On a busy
/// machine a busy loop may get less than 100 ms of CPU in a second, but it
/// spends the rest waiting for more, so the second bound still sees it.
/// `who` names it in the failure.
pub fn assert_not_spinning(pid: u32, who: &str) {
    let (cpu_before, (run_before, wait_before)) = (cpu_time(pid), run_and_wait(pid));
    std::thread::sleep(Duration::from_secs(1));
    let (run_after, wait_after) = run_and_wait(pid);
    let used = cpu_time(pid).saturating_sub(cpu_before);
    // Saturating: a thread that exited took its counts with it.
    let run = run_after.saturating_sub(run_before);
    let wait = wait_after.saturating_sub(wait_before);
    assert!(
        used < Duration::from_millis(300) && run + wait < Duration::from_millis(500),
        "{who} spins: in 1 s it used {used:?} of CPU, and was runnable for {:?} \
         ({run:?} on a CPU, {wait:?} waiting for one)",
        run + wait
    );
}

/// What the epoll instances of process `pid` watch, as the kernel shows it
/// in /proc/PID/fdinfo: one `(watched fd, event mask)` per interest entry.
///
/// The mask is what the program asked for, plus EPOLLERR and EPOLLHUP, which
/// the kernel always adds; EPOLLET is bit 31.
pub fn epoll_interest(pid: u32) -> Vec<(i32, u32)> {
    let mut interest = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        if target.to_string_lossy() != "anon_inode:[eventpoll]" {
            continue;
        }
        let info_path = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
        let Ok(info) = fs::read_to_string(info_path) else {
            continue;
        };
        // Lines look like `tfd:        6 events: 80000019 data: ...`.
        for line in info.lines().filter(|line| line.starts_with("tfd:")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let fd = words[1].parse().unwrap();
            let events = u32::from_str_radix(words[3], 16).unwrap();
            interest.push((fd, events));
        }
    }
    interest
}

/// How many TCP connections (sockets in any state but LISTEN) process `pid`
/// holds open, from its fds' socket inodes and /proc/net/tcp{,6}.
pub fn tcp_connections(pid: u32) -> usize {
    connection_fds(pid).len()
}

/// The fds of process `pid` that are TCP connections (sockets in any state
/// but LISTEN), from their socket inodes and /proc/net/tcp{,6}.
pub fn connection_fds(pid: u32) -> Vec<i32> {
    let mut held = Vec::new();
    tcp_sockets(pid, |fd, state, _| {
        if state != LISTEN {
            held.push(fd);
        }
    });
    held
}

/// For each listening socket of process `pid`, how many connections wait
/// in its accept queue: what /proc/net/tcp shows as `rx_queue` for a
/// socket in LISTEN (the kernel's `sk_ack_backlog`; `ss -lt` calls it
/// Recv-Q).
pub fn accept_queues(pid: u32) -> Vec<usize> {
    let mut queues = Vec::new();
    tcp_sockets(pid, |_, state, rx_queue| {
        if state == LISTEN {
            queues.push(rx_queue);
        }
    });
    queues
}

/// The state /proc/net/tcp gives a listening socket.
const LISTEN: &str = "0A";

/// Calls `each(fd, state, rx_queue)` for every TCP socket of process
/// `pid`, found by its fds' socket inodes in /proc/net/tcp{,6}. The state
/// is the table's hex code (`01` ESTABLISHED, `0A` LISTEN, ...).
fn tcp_sockets(pid: u32, mut each: impl FnMut(i32, &str, usize)) {
    // `3 -> socket:[1234]`: the fd and its socket's inode.
    let sockets: std::collections::HashMap<String, i32> = fd_targets(pid)
        .iter()
        .filter_map(|fd| {
            let (number, target) = fd.split_once(" -> ")?;
            let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some((inode.to_owned(), number.parse().ok()?))
        })
        .collect();
    if sockets.is_empty() {
        return;
    }
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        // `sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout
        // inode ...`. The table lists TIME_WAIT sockets too (inode 0), tens
        // of thousands after a load test: look at three fields a line,
        // allocate nothing.
        for line in text.lines().skip(1) {
            let mut fields = line.split_whitespace();
            let state = fields.nth(3);
            let queues = fields.next();
            let inode = fields.nth(4);
            if let (Some(state), Some(queues), Some(inode)) = (state, queues, inode)
                && let Some(fd) = sockets.get(inode)
            {
                let rx_queue = queues
                    .split_once(':')
                    .and_then(|(_, rx)| usize::from_str_radix(rx, 16).ok())
                    .unwrap_or(0);
                each(*fd, state, rx_queue);
            }
        }
    }
}

/// A counter of the kernel's `TcpExt` group in /proc/net/netstat (what
/// `nstat -az TcpExtNAME` shows), for the whole machine. Panics if there
/// is no such counter.
pub fn tcp_ext(name: &str) -> u64 {
    let text = fs::read_to_string("/proc/net/netstat").expect("/proc/net/netstat");
    // Pairs of lines: `TcpExt: Name1 Name2 ...`, then `TcpExt: 1 2 ...`.
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let (names, values) = (lines[0], lines[1]);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_else(|| panic!("no TcpExt counter {name} in /proc/net/netstat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_reads_the_letter_after_the_name() {
        let child = crate::raw::Killed(
            std::process::Command::new("sleep")
                .arg("100")
                .spawn()
                .unwrap(),
        );
        assert!(
            crate::wait_until(crate::client::PATIENCE, || state(child.pid()) == 'S'),
            "{}",
            state(child.pid())
        );
        child.signal(libc::SIGSTOP);
        assert!(
            crate::wait_until(crate::client::PATIENCE, || state(child.pid()) == 'T'),
            "{}",
            state(child.pid())
        );
    }
}
