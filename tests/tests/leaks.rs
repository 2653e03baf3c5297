//! No leaked file descriptors, connections or threads: clients that leave
//! early, half-way, or with a reset leave nothing behind in the server.
//! Every server of [`tests::targets::SERVERS`], one after another; a
//! failure names its server.

use std::io::Write;

use tests::targets::{self, Target};
use tests::{Server, connect};

/// 200 clients that misbehave in four ways, 50 each.
fn misbehave(target: &Target, server: &Server) {
    // The first line of the request, to stop in the middle of.
    let line_end = target
        .request
        .iter()
        .position(|&b| b == b'\n')
        .expect("a request line");
    for client in 0..200 {
        let mut stream = connect(server.addr());
        match client % 4 {
            // Connects and leaves without a word (ab does this at the end
            // of every run).
            0 => {}
            // Leaves in the middle of its request.
            1 => stream.write_all(&target.request[..=line_end]).unwrap(),
            // Resets in the middle of its request.
            2 => {
                stream.write_all(&target.request[..8]).unwrap();
                tests::client::reset(stream);
                continue;
            }
            // Sends a whole request and resets before reading the answer.
            _ => {
                stream.write_all(target.request).unwrap();
                tests::client::reset(stream);
                continue;
            }
        }
    }
}

fn no_fd_leaks(target: &Target) {
    // Answering one request first makes every fd of the server's own exist:
    // it prints its startup line before it creates its epoll instance and
    // signalfd.
    let (server, baseline) = target.settled(&[]);
    misbehave(target, &server);
    // The server handles the last of them a moment later; then it holds
    // what it held before, and still serves.
    target.assert_back(&server, baseline);
}

/// Clients that leave silently, half-way or with a reset leave no fd,
/// interest entry, connection or thread behind, in any server.
#[test]
fn misbehaving_clients_leave_nothing_behind() {
    for target in targets::servers() {
        no_fd_leaks(target);
    }
}
