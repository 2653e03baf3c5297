//! io_uring for the tests of example 16: whether this kernel lets us use
//! it, and a way to make it refuse a server on purpose.
//!
//! io_uring can be refused where everything else works: Docker's default
//! seccomp profile blocks io_uring_setup(2), the sysctl
//! kernel.io_uring_disabled turns it off, and kernels before 5.6 lack what
//! example 16 submits. A test that needs it checks first and, when the
//! kernel refuses, says so and why in a banner and skips: the refusal is
//! the machine's, not the code's, and .ci/run cannot install it away.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// None when io_uring_setup(2) works for this process; otherwise why not
/// (the errno), for a skip banner.
pub fn refusal() -> Option<String> {
    // struct io_uring_params: 120 bytes, all zero but what the kernel
    // fills in. Four entries, the smallest useful ring.
    let mut params = [0u64; 15];
    // SAFETY: io_uring_setup(2) reads and writes `params`, 120 bytes that
    // live for the call, and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: the fd was just returned to us, and nothing else has it.
        unsafe { libc::close(fd as i32) };
        return None;
    }
    Some(format!(
        "io_uring_setup(2) fails here: {} (`cargo run -p example16_io_uring` says why)",
        io::Error::last_os_error()
    ))
}

/// True when io_uring works here. Otherwise prints a banner saying that
/// `test` skips, and why, and returns false.
pub fn available_or_skip(test: &str) -> bool {
    let Some(why) = refusal() else {
        return true;
    };
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !! SKIPPED: {test} needs io_uring, and the kernel refuses it.\n\
         !! {why}\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    false
}

/// Makes `command` start its process under a seccomp filter that fails
/// io_uring_setup(2) with `errno`, as a container's profile does (Docker's
/// answers EPERM), and allows every other call.
pub fn refuse_io_uring_setup(command: &mut Command, errno: i32) {
    // A classic BPF program over struct seccomp_data, whose first field
    // (offset 0) is the system call's number: load it; if it is
    // io_uring_setup, return SECCOMP_RET_ERRNO with `errno`; else allow.
    // (It does not check the architecture field: the test's processes make
    // native calls only.)
    let statement = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump_if_equal = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let program = [
        statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        jump_if_equal(libc::SYS_io_uring_setup as u32, 0, 1),
        statement(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
        ),
        statement(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: prctl(2) and seccomp(2)
    // are system calls, and nothing here allocates (the program is copied
    // into the closure before the fork).
    unsafe {
        command.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_ptr() as *mut libc::sock_filter,
            };
            // A process without CAP_SYS_ADMIN may install a filter only
            // once it has promised not to gain privileges (seccomp(2)).
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            let flags: libc::c_uint = 0;
            let installed = libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &fprog as *const libc::sock_fprog,
            );
            if installed != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
