//! Creating the listening socket: lines 9 to 12 of every Python example.

use std::io;
use std::net::TcpListener;

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use crate::args::ServerArgs;

// ANCHOR: listen
/// Creates, binds and opens a listening TCP socket, then prints
/// `listening on IP:PORT` (the real port when `--addr` asked for port 0).
pub fn listen(args: &ServerArgs) -> anyhow::Result<TcpListener> {
    listen_with(args, |_| Ok(()))
}

/// Like [`listen`], with `options` applied to the socket before it
/// listens, so no client is accepted before they are set (the startup
/// line, which a client may be waiting for, comes after them too).
/// Example 6 sets TCP_NODELAY this way, example 13 TCP_DEFER_ACCEPT.
pub fn listen_with(
    args: &ServerArgs,
    options: impl FnOnce(&Socket) -> io::Result<()>,
) -> anyhow::Result<TcpListener> {
    let addr = args.addr;
    // socket(2): a new TCP endpoint, not yet bound to any address. socket2
    // opens it with SOCK_CLOEXEC so it is not inherited by child programs.
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .context("cannot create a TCP socket")?;

    // SO_REUSEADDR lets bind(2) succeed while connections of a previous run
    // of the server linger in TIME_WAIT, so a restarted server binds at once.
    socket
        .set_reuse_address(true)
        .context("cannot set SO_REUSEADDR")?;

    // bind(2): claim the address and port.
    socket
        .bind(&addr.into())
        .map_err(|err| explain_bind_error(err, &addr.to_string()))?;

    options(&socket).context("cannot set the listening socket's options")?;

    // listen(2): from now on the kernel completes TCP handshakes on this port
    // by itself and queues the new connections, up to `backlog` of them
    // (Linux lets one more wait, and caps `backlog` at net.core.somaxconn),
    // until the program takes them with accept(2).
    socket
        .listen(args.backlog)
        .with_context(|| format!("cannot listen on {addr}"))?;

    let listener = TcpListener::from(socket);
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    // Scripts and tests read this line to learn the port.
    crate::output::write_stdout(format!("listening on {local}\n").as_bytes());
    Ok(listener)
}
// ANCHOR_END: listen

/// Turns a failed bind into a message that says what to do about it.
/// Public for servers that bind their own sockets (example 13's
/// SO_REUSEPORT listeners).
pub fn explain_bind_error(err: io::Error, addr: &str) -> anyhow::Error {
    let hint = match err.kind() {
        io::ErrorKind::AddrInUse => {
            "the port is in use: another server (perhaps another example) is \
             listening on it; stop that one, or choose another port with \
             --addr 127.0.0.1:PORT (port 0 picks a free one)"
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied: ports below 1024 need root or \
             CAP_NET_BIND_SERVICE; choose a port above 1023"
        }
        io::ErrorKind::AddrNotAvailable => {
            "no network interface of this machine has that address; use \
             127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        }
        _ => "bind(2) failed",
    };
    anyhow::Error::new(err).context(format!("cannot listen on {addr}: {hint}"))
}

/// True when a failed accept(2) concerns one client only, so the server
/// should skip it and accept the next: ECONNABORTED (the client reset its
/// connection while it waited in the queue), EPROTO and EPERM (a protocol
/// error, a firewall rule), and the network errors Linux passes on from the
/// new connection (accept(2), "Error handling").
///
/// Any other failure (out of descriptors, above all) lasts: retrying at
/// once would fail again, so the servers pause accepting instead (see
/// [`crate::accept`]).
pub fn concerns_one_client(err: &io::Error) -> bool {
    use nix::libc::*;
    matches!(
        err.raw_os_error(),
        Some(
            ECONNABORTED
                | EPROTO
                | EPERM
                | ENETDOWN
                | ENOPROTOOPT
                | EHOSTDOWN
                | ENONET
                | EHOSTUNREACH
                | EOPNOTSUPP
                | ENETUNREACH
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aborted_client_is_skipped_but_running_out_of_fds_lasts() {
        let aborted = io::Error::from_raw_os_error(nix::libc::ECONNABORTED);
        let out_of_fds = io::Error::from_raw_os_error(nix::libc::EMFILE);
        assert!(concerns_one_client(&aborted));
        assert!(!concerns_one_client(&out_of_fds));
    }

    fn args(addr: &str) -> ServerArgs {
        ServerArgs {
            addr: addr.parse().unwrap(),
            backlog: 16,
            quiet: true,
        }
    }

    #[test]
    fn port_zero_gets_a_real_port() {
        let listener = listen(&args("127.0.0.1:0")).unwrap();
        assert_ne!(listener.local_addr().unwrap().port(), 0);
    }

    #[test]
    fn port_in_use_is_explained() {
        let first = listen(&args("127.0.0.1:0")).unwrap();
        let taken = first.local_addr().unwrap().to_string();
        let err = listen(&args(&taken)).unwrap_err();
        assert!(format!("{err:#}").contains("the port is in use"), "{err:#}");
    }
}
