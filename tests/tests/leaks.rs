//! No leaked file descriptors: clients that leave early, half-way, or with
//! a reset leave nothing behind in the server.

use std::io::Write;

use tests::{GET, RESPONSE, Server, connect, request};

/// 200 clients that misbehave in four ways, 50 each.
fn misbehave(server: &Server) {
    for client in 0..200 {
        let mut stream = connect(server.addr());
        match client % 4 {
            // Connects and leaves without a word (ab does this at the end
            // of every run).
            0 => {}
            // Leaves in the middle of its request.
            1 => stream.write_all(b"GET / HTTP/1.0\r\n").unwrap(),
            // Resets in the middle of its request.
            2 => {
                stream.write_all(b"GET / HT").unwrap();
                tests::client::reset(stream);
                continue;
            }
            // Sends a whole request and resets before reading the answer.
            _ => {
                stream.write_all(GET).unwrap();
                tests::client::reset(stream);
                continue;
            }
        }
    }
}

fn no_fd_leaks(name: &str) {
    let server = Server::start(name, &["--quiet"]);
    // One answered request first: the server prints its startup line
    // before it creates its epoll instance and signalfd; once it has
    // answered and closed that connection, every fd of its own exists.
    assert_eq!(request(server.addr(), GET), RESPONSE);
    let baseline = server.idle_holdings();
    misbehave(&server);
    // The server handles the last of them a moment later.
    server.assert_back_to(baseline);
    // And it still serves.
    assert_eq!(request(server.addr(), GET), RESPONSE);
}

#[test]
fn example02_loop() {
    no_fd_leaks("example02_loop");
}

#[test]
fn example03_epoll_level() {
    no_fd_leaks("example03_epoll_level");
}

#[test]
fn example04_epoll_edge() {
    no_fd_leaks("example04_epoll_edge");
}

#[test]
fn example05_cork() {
    no_fd_leaks("example05_cork");
}

#[test]
fn example06_nodelay() {
    no_fd_leaks("example06_nodelay");
}
