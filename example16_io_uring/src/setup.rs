//! Making the ring, and saying plainly why, when the kernel refuses it.
//!
//! io_uring_setup(2) can fail on a machine whose kernel has io_uring, for
//! reasons the errno alone does not tell apart: EPERM is the sysctl
//! kernel.io_uring_disabled (Linux 6.6), a seccomp filter (Docker's
//! default profile refuses io_uring since 2023), or a security module.
//! So the server reads what it can of its situation (the sysctl, its own
//! seccomp mode, the kernel's release, its locked-memory limit) and names
//! the likely cause, with what to do about it.

use std::fs;
use std::io;

use anyhow::{Context, anyhow};
use io_uring::{IoUring, Probe, opcode};
use nix::libc;

/// The operations the server submits, and their names in io_uring_enter(2).
/// Linux 5.6 has them all.
const NEEDED: [(u8, &str); 7] = [
    (opcode::Accept::CODE, "IORING_OP_ACCEPT"),
    (opcode::Recv::CODE, "IORING_OP_RECV"),
    (opcode::Send::CODE, "IORING_OP_SEND"),
    (opcode::Close::CODE, "IORING_OP_CLOSE"),
    (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD"),
    (opcode::Timeout::CODE, "IORING_OP_TIMEOUT"),
    (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
];

/// io_uring_setup(2) with `submissions` submission queue entries and
/// `completions` completion queue entries, then a probe of the operations
/// the kernel knows. Any failure is explained.
pub fn ring(submissions: u32, completions: u32) -> anyhow::Result<(IoUring, Probe)> {
    // io_uring_setup(2): the kernel allocates both queues and the array of
    // submission entries, and returns an fd for them; the crate then maps
    // them into our memory (mmap(2)). IORING_SETUP_CQSIZE asks for a
    // completion queue larger than the default, twice the submission queue.
    let ring = IoUring::builder()
        .setup_cqsize(completions)
        .build(submissions)
        .map_err(|err| refused(err, ring_kib(submissions, completions)))?;
    let facts = Facts::read();
    // Without IORING_FEAT_NODROP (Linux 5.5), completions that find the
    // completion queue full are dropped, and a connection whose completion
    // is lost waits for ever.
    if !ring.params().is_feature_nodrop() {
        return Err(anyhow!(
            "io_uring is unavailable: Linux {} keeps no completion that finds the \
             completion queue full (IORING_FEAT_NODROP, Linux 5.5); this server needs \
             Linux 5.6 or later",
            facts.release
        ));
    }
    // io_uring_register(IORING_REGISTER_PROBE): which operations the kernel
    // knows. Linux 5.6 brought the probe itself.
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .with_context(|| {
            format!(
                "io_uring is unavailable: Linux {} cannot list its io_uring operations \
                 (IORING_REGISTER_PROBE, Linux 5.6); this server needs Linux 5.6 or later",
                facts.release
            )
        })?;
    if let Some((_, name)) = NEEDED.iter().find(|(code, _)| !probe.is_supported(*code)) {
        return Err(anyhow!(
            "io_uring is unavailable: Linux {} lacks {name}, which this server submits \
             (Linux 5.6 and later have every operation it uses)",
            facts.release
        ));
    }
    Ok((ring, probe))
}

/// The memory a ring of this size takes, in KiB: 64-byte submission
/// entries and a 4-byte index for each, and 16-byte completion entries.
fn ring_kib(submissions: u32, completions: u32) -> u64 {
    (u64::from(submissions) * (64 + 4) + u64::from(completions) * 16).div_ceil(1024)
}

/// The error for a failed io_uring_setup(2): what the errno means here.
fn refused(err: io::Error, ring_kib: u64) -> anyhow::Error {
    let errno = err.raw_os_error().unwrap_or(0);
    let why = explanation(errno, &Facts::read(), ring_kib);
    anyhow::Error::new(err).context(format!("io_uring is unavailable: {why}"))
}

/// What the server can learn of why the kernel refuses it, from /proc.
#[derive(Debug, Clone, Default)]
struct Facts {
    /// The kernel's release, `6.18.0-1-amd64` (/proc/sys/kernel/osrelease).
    release: String,
    /// kernel.io_uring_disabled: 0, 1 or 2; None before Linux 6.6.
    disabled: Option<u32>,
    /// kernel.io_uring_group: the group whose members may still use
    /// io_uring when io_uring_disabled is 1 (-1: none).
    group: Option<i64>,
    /// The `Seccomp:` field of /proc/self/status: 0 none, 1 strict, 2 a
    /// filter.
    seccomp: Option<u32>,
    /// RLIMIT_MEMLOCK's soft limit in KiB (`ulimit -l`); None if unlimited.
    memlock_kib: Option<u64>,
}

impl Facts {
    fn read() -> Facts {
        let sysctl = |name: &str| {
            fs::read_to_string(format!("/proc/sys/kernel/{name}"))
                .ok()
                .map(|text| text.trim().to_owned())
        };
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
        Facts {
            release: sysctl("osrelease").unwrap_or_else(|| "(unknown)".to_owned()),
            disabled: sysctl("io_uring_disabled").and_then(|v| v.parse().ok()),
            group: sysctl("io_uring_group").and_then(|v| v.parse().ok()),
            seccomp: field(&status, "Seccomp:").and_then(|v| v.parse().ok()),
            // `Max locked memory  8388608  8388608  bytes`: the soft limit.
            memlock_kib: field(&limits, "Max locked memory")
                .and_then(|v| v.parse::<u64>().ok())
                .map(|bytes| bytes / 1024),
        }
    }
}

/// The first word after `label` on the line of `text` that begins with it.
fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let line = text.lines().find(|line| line.starts_with(label))?;
    line[label.len()..].split_whitespace().next()
}

/// Why io_uring_setup(2) failed with `errno`, given the `facts`: the cause
/// and what to do, in a sentence or two.
fn explanation(errno: i32, facts: &Facts, ring_kib: u64) -> String {
    let linux = &facts.release;
    let filtered = facts.seccomp == Some(2);
    match errno {
        libc::ENOSYS if filtered => format!(
            "io_uring_setup(2) does not exist for this process (ENOSYS): the seccomp \
             filter it runs under (/proc/self/status: Seccomp: 2) answers for it, or \
             Linux {linux} was built without io_uring. In a container, allow \
             io_uring_setup, io_uring_enter and io_uring_register, or run it with \
             --security-opt seccomp=unconfined"
        ),
        libc::ENOSYS => format!(
            "io_uring_setup(2) does not exist here (ENOSYS): Linux {linux} was built \
             without io_uring (CONFIG_IO_URING), or is older than 5.1"
        ),
        libc::EPERM if facts.disabled == Some(2) => format!(
            "the sysctl kernel.io_uring_disabled is 2 on this machine, which refuses \
             io_uring to every process (EPERM). As root, `sysctl \
             kernel.io_uring_disabled=0` allows it (Linux {linux})"
        ),
        libc::EPERM if facts.disabled == Some(1) => format!(
            "the sysctl kernel.io_uring_disabled is 1 on this machine, which refuses \
             io_uring (EPERM) to a process that is neither in the group \
             kernel.io_uring_group ({}) nor has CAP_SYS_ADMIN. As root, add the user \
             to that group, or `sysctl kernel.io_uring_disabled=0`",
            match facts.group {
                Some(group) if group >= 0 => format!("gid {group}"),
                _ => "none is set".to_owned(),
            }
        ),
        libc::EPERM if filtered => "a seccomp filter refuses io_uring_setup(2) (EPERM; \
             /proc/self/status says Seccomp: 2). Docker's default profile does so since \
             2023: run the container with --security-opt seccomp=unconfined, or with a \
             profile that allows io_uring_setup, io_uring_enter and io_uring_register"
            .to_owned(),
        libc::EPERM => format!(
            "io_uring_setup(2) was refused (EPERM), though {} and no seccomp filter is \
             installed: a security module (SELinux, AppArmor) may deny it",
            match facts.disabled {
                Some(value) => format!("kernel.io_uring_disabled is {value}"),
                None => format!("Linux {linux} has no kernel.io_uring_disabled"),
            }
        ),
        libc::ENOMEM if facts.memlock_kib.is_some_and(|kib| kib < ring_kib) => format!(
            "the ring takes {ring_kib} KiB of locked memory, more than the limit on it \
             (RLIMIT_MEMLOCK, `ulimit -l`), {} KiB here (ENOMEM): kernels before 5.12, \
             and some later ones (this is Linux {linux}), charge the ring to that \
             limit. Raise it: `ulimit -l {}`, or LimitMEMLOCK= for a systemd service",
            facts.memlock_kib.unwrap_or_default(),
            ring_kib.next_power_of_two()
        ),
        libc::ENOMEM => format!(
            "the kernel found no memory for a ring of {ring_kib} KiB (ENOMEM, Linux \
             {linux}); or, where the ring is charged to the locked-memory limit \
             (`ulimit -l`, {}), this user's other processes have used it up",
            match facts.memlock_kib {
                Some(kib) => format!("{kib} KiB here"),
                None => "unlimited here".to_owned(),
            }
        ),
        libc::EINVAL => format!(
            "Linux {linux} refused the ring's parameters (EINVAL): this server asks for \
             a completion queue larger than its submission queue \
             (IORING_SETUP_CQSIZE, Linux 5.5), and needs Linux 5.6 or later"
        ),
        libc::EMFILE | libc::ENFILE => "no file descriptor is left for the ring".to_owned(),
        _ => format!("io_uring_setup(2) failed (Linux {linux})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(disabled: Option<u32>, seccomp: u32, release: &str) -> Facts {
        Facts {
            release: release.to_owned(),
            disabled,
            group: Some(-1),
            seccomp: Some(seccomp),
            memlock_kib: Some(64),
        }
    }

    fn memlock(kib: u64) -> Facts {
        Facts {
            memlock_kib: Some(kib),
            ..facts(Some(0), 0, "6.18.0")
        }
    }

    /// Each cause of a refusal gets its own words, and the remedy.
    #[test]
    fn each_refusal_names_its_cause() {
        let cases = [
            (
                libc::EPERM,
                facts(Some(2), 0, "6.8.0"),
                "io_uring_disabled is 2",
            ),
            (
                libc::EPERM,
                facts(Some(1), 0, "6.8.0"),
                "kernel.io_uring_group",
            ),
            (
                libc::EPERM,
                facts(Some(0), 2, "6.8.0"),
                "seccomp=unconfined",
            ),
            (libc::EPERM, facts(None, 0, "5.15.0"), "security module"),
            (libc::ENOSYS, facts(None, 0, "4.19.0"), "older than 5.1"),
            (libc::ENOSYS, facts(None, 2, "6.1.0"), "Seccomp: 2"),
            (libc::ENOMEM, memlock(64), "ulimit -l 1024"),
            (libc::ENOMEM, memlock(8192), "found no memory"),
            (libc::EINVAL, facts(None, 0, "5.4.0"), "IORING_SETUP_CQSIZE"),
        ];
        for (errno, facts, expected) in cases {
            let why = explanation(errno, &facts, 784);
            assert!(why.contains(expected), "{errno} {facts:?}: {why}");
        }
    }

    #[test]
    fn this_servers_ring_takes_784_kib() {
        assert_eq!(ring_kib(4096, 32 * 1024), 784);
    }

    #[test]
    fn limits_are_read() {
        let limits = "Max locked memory         8388608              8388608              bytes";
        assert_eq!(field(limits, "Max locked memory"), Some("8388608"));
        assert_eq!(field("Seccomp:\t2\n", "Seccomp:"), Some("2"));
    }
}
