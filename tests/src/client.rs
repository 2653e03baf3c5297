//! The client side: requests, responses, and TCP_INFO.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// The tutorial's request, as curl would send it in its shortest form.
pub const GET: &[u8] = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";

/// The tutorial's response, byte for byte: what every example must send.
pub const RESPONSE: &[u8] = b"HTTP/1.0 200 OK\r\n\
Date: Mon, 1 Jan 1996 01:01:01 GMT\r\n\
Content-Type: text/plain\r\n\
Content-Length: 13\r\n\
\r\n\
Hello, world!";

/// How long a client waits for a server before the test fails: long
/// enough for a loaded 2-core machine, short enough to end a hung test.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Connects to `addr` with read and write timeouts of [`PATIENCE`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|err| panic!("connect to {addr}: {err}"));
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Sends `bytes` on a connection and reads until the server closes.
pub fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(bytes)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

/// One request on a new connection; the response up to the server's close.
pub fn request(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    exchange(&mut connect(addr), bytes).unwrap_or_else(|err| panic!("request to {addr}: {err}"))
}

/// Sends `bytes` on `stream` and reads the answer up to the server's
/// close, as a client refused partway through its request sees it: the
/// server stops reading, answers, and closes.
///
/// The write may then fail: EPIPE after the server's close, or ECONNRESET
/// once its close has reset the connection (close(2) with bytes still
/// unread sends RST, not FIN). That ends the sending, not the reading: the
/// answer went out before the RST, in order, and what has reached our
/// receive queue stays readable after a reset: a read returns it, and only
/// the read after it fails with ECONNRESET. Panics on any other error.
pub fn send_then_read_answer(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    if let Err(err) = stream.write_all(bytes) {
        assert!(
            matches!(err.kind(), BrokenPipe | ConnectionReset),
            "sending: {err}"
        );
    }
    let mut answer = Vec::new();
    // read_to_end keeps what it read before an error.
    if let Err(err) = stream.read_to_end(&mut answer) {
        assert!(
            err.kind() == ConnectionReset,
            "reading: {err}; got {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    answer
}

/// Closes `stream` with a reset (RST) instead of the orderly FIN: with
/// SO_LINGER set to zero, close(2) discards unsent data and aborts.
pub fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// The kernel's TCP_INFO for a socket (tcp(7)): segment counters, RTT,
/// retransmissions.
pub fn tcp_info(stream: &TcpStream) -> libc::tcp_info {
    // SAFETY: tcp_info is plain integers, so all-zero is a valid value;
    // getsockopt writes at most `len` bytes into it and reports how many.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        );
        assert_eq!(
            rc,
            0,
            "getsockopt(TCP_INFO): {}",
            std::io::Error::last_os_error()
        );
        info
    }
}

/// `len` bytes from a small xorshift generator: every byte value, no
/// pattern a bug could accidentally reproduce, and the same every run.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}
