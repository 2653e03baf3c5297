//! What /proc says about a running server, read with the `procfs` crate
//! (its parsers know the corners: a command name with spaces and
//! parentheses in /proc/PID/stat, units in /proc/PID/status). Read by
//! hand: the epoll lines of /proc/PID/fdinfo, which procfs does not parse,
//! and each thread's wchan, a bare function name.

use std::fs;
use std::time::Duration;

use procfs::process::{FDTarget, Process, Status};

/// Process `pid`'s directory in /proc. Panics if it has gone.
fn process(pid: u32) -> Process {
    Process::new(pid as i32).unwrap_or_else(|err| panic!("no /proc/{pid}: {err}"))
}

/// How many file descriptors process `pid` has open.
pub fn fd_count(pid: u32) -> usize {
    // The entries of /proc/PID/fd, counted without reading where each
    // leads (tests poll this with 10,000 fds open). Not procfs's
    // `fd_count`: that one reads the directory's size, which since Linux
    // 6.2 is the number of fd slots taken, and a blocking accept(2) takes
    // its slot before a client comes: a server waiting in accept would
    // count one fd more than it holds.
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or_else(|err| panic!("cannot list /proc/{pid}/fd: {err}"))
}

/// What each open fd of process `pid` is, as `ls -l /proc/PID/fd` shows
/// it (`3 -> socket:[1234]`, `6 -> anon_inode:[eventpoll]`): for tests
/// that look for an fd of a kind, and for failure messages.
pub fn fd_targets(pid: u32) -> Vec<String> {
    let Ok(fds) = Process::new(pid as i32).and_then(|process| process.fd()) else {
        return Vec::new();
    };
    fds.flatten()
        .map(|info| format!("{} -> {}", info.fd, link_text(&info.target)))
        .collect()
}

/// The text of an fd's link in /proc/PID/fd, which procfs has parsed.
fn link_text(target: &FDTarget) -> String {
    match target {
        FDTarget::Path(path) => path.display().to_string(),
        FDTarget::Socket(inode) => format!("socket:[{inode}]"),
        FDTarget::Net(inode) => format!("net:[{inode}]"),
        FDTarget::Pipe(inode) => format!("pipe:[{inode}]"),
        FDTarget::AnonInode(kind) => format!("anon_inode:{kind}"),
        FDTarget::MemFD(name) => format!("/memfd:{name}"),
        FDTarget::Other(kind, inode) => format!("{kind}:[{inode}]"),
        FDTarget::Unknown(kind, rest) => format!("{kind}:{rest}"),
    }
}

/// The fds of process `pid` and what each is, from /proc/PID/fd (an fd
/// closed while the directory is read is skipped).
fn fds(pid: u32) -> Vec<(i32, FDTarget)> {
    process(pid)
        .fd()
        .unwrap_or_else(|err| panic!("cannot list /proc/{pid}/fd: {err}"))
        .flatten()
        .map(|info| (info.fd, info.target))
        .collect()
}

/// The fds of process `pid` that are sockets, from /proc/PID/fd alone: a
/// quick look where [`connection_fds`], which reads the machine's whole
/// /proc/net/tcp, can take seconds on a box with tens of thousands of
/// sockets in TIME_WAIT. It counts listeners too: compare with a baseline.
pub fn socket_fds(pid: u32) -> Vec<i32> {
    fds(pid)
        .into_iter()
        .filter(|(_, target)| matches!(target, FDTarget::Socket(_)))
        .map(|(fd, _)| fd)
        .collect()
}

/// The fds of process `pid` that are anonymous inodes of `kind`: the
/// kernel objects with no file behind them, named in /proc/PID/fd as
/// `anon_inode:[eventfd]`, `anon_inode:[timerfd]`, `anon_inode:[eventpoll]`
/// (pass the part in brackets, brackets included).
pub fn anon_inode_fds(pid: u32, kind: &str) -> Vec<i32> {
    fds(pid)
        .into_iter()
        .filter(|(_, target)| matches!(target, FDTarget::AnonInode(name) if name == kind))
        .map(|(fd, _)| fd)
        .collect()
}

/// /proc/PID/status: `threads`, and memory in KiB (`vmrss`, `vmhwm` the
/// peak resident memory, `vmsize`).
pub fn status(pid: u32) -> Status {
    process(pid)
        .status()
        .unwrap_or_else(|err| panic!("cannot read /proc/{pid}/status: {err}"))
}

/// How many threads process `pid` runs.
pub fn threads(pid: u32) -> u64 {
    status(pid).threads
}

/// The peak resident memory the kernel has seen for process `pid` so far
/// (VmHWM, the "high water mark"), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status(pid).vmhwm.expect("VmHWM in /proc/PID/status")
}

/// The state letter of process `pid` (`R` running, `S` sleeping, `T`
/// stopped, `Z` zombie, ...).
pub fn state(pid: u32) -> char {
    stat(pid).state
}

fn stat(pid: u32) -> procfs::process::Stat {
    process(pid)
        .stat()
        .unwrap_or_else(|err| panic!("cannot read /proc/{pid}/stat: {err}"))
}

/// CPU time (user + system) process `pid` has used so far, counted by the
/// kernel in clock ticks (sysconf(_SC_CLK_TCK), usually 100 a second).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = stat(pid);
    Duration::from_millis((stat.utime + stat.stime) * 1000 / procfs::ticks_per_second())
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
    let tasks = process(pid)
        .tasks()
        .unwrap_or_else(|err| panic!("cannot list /proc/{pid}/task: {err}"));
    // A thread that has just exited has no schedstat any more: skipped.
    for schedstat in tasks.flatten().filter_map(|task| task.schedstat().ok()) {
        run += schedstat.sum_exec_runtime;
        wait += schedstat.run_delay;
    }
    (Duration::from_nanos(run), Duration::from_nanos(wait))
}

/// How busy a process was over one second: CPU time used, and time its
/// threads were on a CPU or runnable, waiting for one.
#[derive(Debug, Clone, Copy)]
pub struct Busy {
    pub used: Duration,
    pub run: Duration,
    pub wait: Duration,
}

impl Busy {
    /// Watches process `pid` for one second.
    pub fn over_a_second(pid: u32) -> Busy {
        let (cpu_before, (run_before, wait_before)) = (cpu_time(pid), run_and_wait(pid));
        std::thread::sleep(Duration::from_secs(1));
        let (run_after, wait_after) = run_and_wait(pid);
        Busy {
            used: cpu_time(pid).saturating_sub(cpu_before),
            // Saturating: a thread that exited took its counts with it.
            run: run_after.saturating_sub(run_before),
            wait: wait_after.saturating_sub(wait_before),
        }
    }

    /// Whether that second looks like a busy loop: 300 ms of CPU or more,
    /// or runnable (on a CPU, or waiting for one) for 500 ms or more. A
    /// server that waits (blocked, or pausing between retries) does
    /// neither; a busy loop is runnable all the time. On a busy machine a
    /// busy loop may get less than 100 ms of CPU in a second, but it spends
    /// the rest waiting for more, so the second bound still sees it.
    pub fn spins(&self) -> bool {
        self.used >= Duration::from_millis(300)
            || self.run + self.wait >= Duration::from_millis(500)
    }
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "in 1 s it used {:?} of CPU, and was runnable for {:?} ({:?} on a CPU, {:?} waiting for one)",
            self.used,
            self.run + self.wait,
            self.run,
            self.wait
        )
    }
}

/// Asserts that process `pid` does not spin over the next second (see
/// [`Busy::spins`]). `who` names it in the failure.
pub fn assert_not_spinning(pid: u32, who: &str) {
    let busy = Busy::over_a_second(pid);
    assert!(!busy.spins(), "{who} spins: {busy}");
}

/// Each thread of process `pid`, with what it is doing, for assertions and
/// failure messages: its id, its name, and the system call it is blocked
/// in (the first field of /proc/PID/task/TID/syscall: a number, or
/// `running`).
pub fn thread_syscalls(pid: u32) -> Vec<(u32, String, String)> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut threads = Vec::new();
    for task in tasks.flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse() else {
            continue;
        };
        let read = |file: &str| fs::read_to_string(task.path().join(file)).unwrap_or_default();
        let syscall = read("syscall");
        let number = syscall
            .split_whitespace()
            .next()
            .unwrap_or("gone")
            .to_owned();
        threads.push((tid, read("comm").trim().to_owned(), number));
    }
    threads.sort();
    threads
}

/// Whether `syscall`, a first field of /proc/PID/task/TID/syscall, is one
/// of the calls that wait on an epoll instance: epoll_wait(2),
/// epoll_pwait(2) or epoll_pwait2(2) (the numbers depend on the
/// architecture).
pub fn is_epoll_wait(syscall: &str) -> bool {
    let Ok(number) = syscall.parse::<libc::c_long>() else {
        return false;
    };
    #[cfg(target_arch = "x86_64")]
    if number == libc::SYS_epoll_wait {
        return true;
    }
    // epoll_pwait2 is 441 on every architecture that has it.
    number == libc::SYS_epoll_pwait || number == 441
}

/// How many threads of process `pid` are asleep waiting on an epoll
/// instance right now.
pub fn threads_in_epoll_wait(pid: u32) -> usize {
    thread_syscalls(pid)
        .iter()
        .filter(|(_, _, syscall)| is_epoll_wait(syscall))
        .count()
}

/// What the epoll instances of process `pid` watch, as the kernel shows it
/// in /proc/PID/fdinfo: one `(watched fd, event mask)` per interest entry.
///
/// The mask is what the program asked for, plus EPOLLERR and EPOLLHUP, which
/// the kernel always adds; EPOLLET is bit 31. An epoll instance open under
/// two fds (tokio's driver dups its own) lists its entries under each.
pub fn epoll_interest(pid: u32) -> Vec<(i32, u32)> {
    let mut interest = Vec::new();
    for (fd, target) in fds(pid) {
        if !matches!(&target, FDTarget::AnonInode(kind) if kind == "[eventpoll]") {
            continue;
        }
        // The fd may have been closed since the listing: skipped.
        let Ok(info) = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
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

/// The operations waiting in the kernel for process `pid`'s io_uring
/// instances, by opcode: the `PollList` of /proc/PID/fdinfo/RING_FD,
/// where each submission that could not complete at once (a recv with no
/// bytes yet, an accept with no client, a poll) waits for its file to
/// become ready, one line `op=27, task_works=0` each. Opcodes are
/// io_uring's (include/uapi/linux/io_uring.h): 6 IORING_OP_POLL_ADD, 13
/// IORING_OP_ACCEPT, 27 IORING_OP_RECV. Empty for a process without
/// io_uring.
pub fn uring_waiting(pid: u32) -> Vec<u32> {
    let mut ops = Vec::new();
    for (fd, target) in fds(pid) {
        if !matches!(&target, FDTarget::AnonInode(kind) if kind == "[io_uring]") {
            continue;
        }
        // The fd may have been closed since the listing: skipped.
        let Ok(info) = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
            continue;
        };
        let list = info
            .lines()
            .skip_while(|line| !line.starts_with("PollList:"))
            .skip(1)
            .take_while(|line| line.starts_with(' '));
        for line in list {
            let op = line
                .trim()
                .strip_prefix("op=")
                .and_then(|rest| rest.split(',').next().and_then(|op| op.parse::<u32>().ok()));
            ops.extend(op);
        }
    }
    ops
}

/// How many TCP connections (sockets in any state but LISTEN) process `pid`
/// holds open, from its fds' socket inodes and /proc/net/tcp{,6}.
pub fn tcp_connections(pid: u32) -> usize {
    connection_fds(pid).len()
}

/// The fds of process `pid` that are TCP connections (sockets in any state
/// but LISTEN), from their socket inodes and /proc/net/tcp{,6}.
pub fn connection_fds(pid: u32) -> Vec<i32> {
    let sockets: std::collections::HashMap<u64, i32> = fds(pid)
        .into_iter()
        .filter_map(|(fd, target)| match target {
            FDTarget::Socket(inode) => Some((inode, fd)),
            _ => None,
        })
        .collect();
    if sockets.is_empty() {
        return Vec::new();
    }
    // The tables list every TCP socket of this network namespace, the
    // whole machine's: TIME_WAIT ones too (inode 0), tens of thousands
    // after a load test. They are read in pieces, and no snapshot: while
    // other sockets come and go, a line may come twice (or not at all), so
    // each fd counts once.
    let table = |read: fn() -> procfs::ProcResult<Vec<procfs::net::TcpNetEntry>>| {
        read().unwrap_or_default()
    };
    let held: std::collections::BTreeSet<i32> = [table(procfs::net::tcp), table(procfs::net::tcp6)]
        .into_iter()
        .flatten()
        .filter(|entry| entry.state != procfs::net::TcpState::Listen)
        .filter_map(|entry| sockets.get(&entry.inode).copied())
        .collect();
    held.into_iter().collect()
}

/// The kernel's record of one TCP socket, as /proc/net/tcp shows it: the
/// one whose local and remote addresses are `local` and `remote` (IPv4).
/// Returns its state (`01` ESTABLISHED, `04` FIN_WAIT1, `07` CLOSE: see
/// the kernel's include/net/tcp_states.h) and its inode (`0` once no
/// process holds it, as for a socket in TIME_WAIT), or None when the
/// kernel holds no such socket at all.
pub fn tcp_socket(
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
) -> Option<(String, String)> {
    // `0100007F:1F90`: the address as the kernel's u32 in native byte
    // order, then the port, in hex.
    let hex = |addr: std::net::SocketAddr| match addr {
        std::net::SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        ),
        std::net::SocketAddr::V6(_) => panic!("tcp_socket reads IPv4 sockets only: {addr}"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let text = fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    text.lines().skip(1).find_map(|line| {
        // `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() > 9 && fields[1] == local && fields[2] == remote)
            .then(|| (fields[3].to_owned(), fields[9].to_owned()))
    })
}

/// The fd of process `pid` that holds the TCP socket from `local` to
/// `remote` (a server's side of one client's connection), if it has one.
pub fn socket_fd(
    pid: u32,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
) -> Option<i32> {
    let (_, inode) = tcp_socket(local, remote)?;
    let inode: u64 = inode.parse().ok()?;
    fds(pid)
        .into_iter()
        .find_map(|(fd, target)| (target == FDTarget::Socket(inode)).then_some(fd))
}

/// For each listening socket of process `pid`, how many connections wait
/// in its accept queue: what /proc/net/tcp shows as `rx_queue` for a
/// socket in LISTEN (the kernel's `sk_ack_backlog`; `ss -lt` calls it
/// Recv-Q).
pub fn accept_queues(pid: u32) -> Vec<usize> {
    let listeners: std::collections::HashSet<u64> = fds(pid)
        .into_iter()
        .filter_map(|(_, target)| match target {
            FDTarget::Socket(inode) => Some(inode),
            _ => None,
        })
        .collect();
    [procfs::net::tcp(), procfs::net::tcp6()]
        .into_iter()
        .flat_map(|table| table.unwrap_or_default())
        .filter(|entry| entry.state == procfs::net::TcpState::Listen)
        .filter(|entry| listeners.contains(&entry.inode))
        .map(|entry| entry.rx_queue as usize)
        .collect()
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
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use nix::sys::epoll::{Epoll, EpollCreateFlags};

    use super::*;

    /// This test's own process stands for the server: the fd of its side of
    /// a connection is found by the connection's addresses, and is among its
    /// socket fds. (Matched by inode, with procfs's parsed targets: when the
    /// lookup compared the text of `fd_targets`, whose form had changed, it
    /// found nothing, and the tests built on it failed or could not fail.)
    #[test]
    fn the_fd_of_a_connection_is_found_by_its_addresses() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server_addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(server_addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let pid = std::process::id();
        let client_addr = client.local_addr().unwrap();
        assert_eq!(
            socket_fd(pid, server_addr, client_addr),
            Some(accepted.as_raw_fd())
        );
        assert!(socket_fds(pid).contains(&accepted.as_raw_fd()));
    }

    /// An epoll instance is an anonymous inode, `anon_inode:[eventpoll]`.
    #[test]
    fn an_epoll_instance_is_found_among_the_anonymous_inodes() {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        let fds = anon_inode_fds(std::process::id(), "[eventpoll]");
        assert!(fds.contains(&epoll.0.as_raw_fd()), "{fds:?}");
        assert!(!anon_inode_fds(std::process::id(), "[timerfd]").contains(&epoll.0.as_raw_fd()));
    }

    /// The state letter follows the process's life: `S` while it sleeps, `T`
    /// once stopped.
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
