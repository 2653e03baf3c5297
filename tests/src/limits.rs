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
