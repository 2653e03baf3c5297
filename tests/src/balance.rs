//! How connections spread over worker threads: example 13's counts per
//! worker, a way to wait until every worker is idle, and the kernel's own
//! order when threads block in accept(2).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use procfs::process::Process;

use crate::client::PATIENCE;

/// One line of example 13's goodbye: `worker W: accepted A, wakeups K,
/// empty E`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerCounts {
    pub worker: usize,
    pub accepted: u64,
    pub wakeups: u64,
    pub empty: u64,
}

/// The worker lines in `stderr`, in the order printed. Panics on a line
/// that starts like one and does not follow the format.
pub fn worker_counts(stderr: &str) -> Vec<WorkerCounts> {
    stderr
        .lines()
        .filter(|line| line.starts_with("worker ") && line.contains(": accepted "))
        .map(|line| {
            let numbers: Vec<u64> = line
                .split(|c: char| !c.is_ascii_digit())
                .filter(|word| !word.is_empty())
                .map(|word| word.parse().unwrap())
                .collect();
            let expected = format!(
                "worker {}: accepted {}, wakeups {}, empty {}",
                numbers[0], numbers[1], numbers[2], numbers[3]
            );
            assert_eq!(line, expected, "not a worker line");
            WorkerCounts {
                worker: numbers[0] as usize,
                accepted: numbers[1],
                wakeups: numbers[2],
                empty: numbers[3],
            }
        })
        .collect()
}

/// Whether every thread of `process` whose id is in `threads` (all of
/// them, if empty) is asleep (state `S`).
fn all_asleep(process: &Process, threads: &[i32]) -> bool {
    let Ok(tasks) = process.tasks() else {
        return false;
    };
    tasks
        .flatten()
        .filter(|task| threads.is_empty() || threads.contains(&task.tid))
        .all(|task| task.stat().is_ok_and(|stat| stat.state == 'S'))
}

/// Waits until every thread of process `pid` is asleep: a server whose
/// workers all wait in epoll_wait (or accept), none still busy with the
/// last client. Panics if that takes longer than a client's patience.
pub fn wait_until_idle(pid: u32) {
    assert!(
        crate::wait_until(PATIENCE, || Process::new(pid as i32)
            .is_ok_and(|process| all_asleep(&process, &[]))),
        "the threads of {pid} never all slept"
    );
}

/// `connections` clients, one after another, each sending `request` and
/// reading the answer to its end, each only once every thread of `pid` is
/// asleep: so that every new connection finds every worker idle.
pub fn one_at_a_time_to_idle_workers(
    pid: u32,
    addr: SocketAddr,
    request: &[u8],
    connections: usize,
) {
    for _ in 0..connections {
        wait_until_idle(pid);
        let answer = crate::request(addr, request);
        assert!(!answer.is_empty(), "no answer");
    }
}

/// `threads` threads blocked in accept(2) on one listening socket (a
/// blocking one: no epoll), and `connections` clients one after another,
/// each only once every one of those threads is asleep in accept. Returns,
/// for each client in turn, the index of the thread that accepted it.
pub fn blocking_accept_order(threads: usize, connections: usize) -> Vec<usize> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tid_tx, tid_rx) = mpsc::channel();
    for index in 0..threads {
        let listener = listener.try_clone().unwrap();
        let tid_tx = tid_tx.clone();
        thread::spawn(move || {
            let _ = tid_tx.send(nix::unistd::gettid().as_raw());
            // accept(2) blocks in the kernel's wait queue of the listening
            // socket until a connection is there. Each thread tells its
            // client who it is, and waits again. (The threads end with the
            // test process.)
            while let Ok((mut stream, _)) = listener.accept() {
                let _ = stream.write_all(&[index as u8]);
            }
        });
    }
    let tids: Vec<i32> = (0..threads)
        .map(|_| tid_rx.recv_timeout(PATIENCE).unwrap())
        .collect();
    let this = Process::myself().expect("/proc/self");
    (0..connections)
        .map(|_| {
            assert!(
                crate::wait_until(PATIENCE, || all_asleep(&this, &tids)),
                "the accepting threads never all slept"
            );
            let mut stream = crate::connect(addr);
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut index = [0u8; 1];
            stream.read_exact(&mut index).unwrap();
            usize::from(index[0])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_lines_are_read_and_others_skipped() {
        let stderr = "example13_many_cores: a warning\n\
                      worker 0: accepted 3, wakeups 10, empty 7\n\
                      worker 1: accepted 0, wakeups 1, empty 0\n";
        assert_eq!(
            worker_counts(stderr),
            [
                WorkerCounts {
                    worker: 0,
                    accepted: 3,
                    wakeups: 10,
                    empty: 7
                },
                WorkerCounts {
                    worker: 1,
                    accepted: 0,
                    wakeups: 1,
                    empty: 0
                },
            ]
        );
    }
}
