//! Accepting clients in an epoll loop without dying, spinning or stranding
//! anyone when accept(2) fails.
//!
//! accept(2) can fail in two ways that need opposite answers:
//!
//! - **For one client.** The connection was aborted (ECONNABORTED), or
//!   accept(2) passes on a network error that was already pending on the
//!   new connection (its "Error handling" section lists them). The next
//!   client is fine: skip this one and accept again. See
//!   [`concerns_one_client`](crate::concerns_one_client).
//! - **For every client, for a while.** The process is out of file
//!   descriptors (EMFILE; ENFILE for the whole system; ENOBUFS and ENOMEM
//!   for memory). The connection stays in the kernel's queue, so the
//!   listening socket stays readable. A level-triggered loop that retries
//!   is told "readable" again at once, forever: 100% CPU, and nobody is
//!   served. An edge-triggered loop that gives up is not told again until
//!   a new connection arrives (only an arrival makes an edge), so the
//!   clients already queued wait for the next one.
//!
//! The Python examples die of the second (examples 3, 5 and 6 raise;
//! example 4 swallows it and strands its queue). Here, the answer to a
//! lasting error is a pause: stop watching the listener
//! (`epoll_ctl(EPOLL_CTL_MOD)` with no events), let `epoll_wait` time out
//! after [`ACCEPT_PAUSE`] (or return earlier for another fd, perhaps a
//! client whose close frees a descriptor), then watch the listener again.
//! Re-arming it makes the kernel check the queue afresh, which reports
//! the clients still waiting even to an edge-triggered entry. nginx does
//! the same (`ngx_disable_accept_events`, re-enabled by a timer after
//! `accept4() failed (24: Too many open files)`); tokio's mini-redis
//! sleeps and retries in `Listener::accept`.
//!
//! A server that uses an [`Acceptor`] keeps three lines of it in its loop:
//! the wait's timeout, the re-arm after each wait, and the accept itself.
//! Everything else here is out of the way of the lesson.
//!
//! One kind of entry cannot be modified at all: a listener registered with
//! EPOLLEXCLUSIVE (example 13). epoll_ctl(2) refuses EPOLL_CTL_MOD on it
//! with EINVAL, so for it the pause is EPOLL_CTL_DEL and the re-arm
//! EPOLL_CTL_ADD, which checks readiness afresh just the same.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags, EpollTimeout};
use socket2::SockRef;

/// How long accepting pauses after accept(2) failed for a lasting reason.
///
/// Long enough that a process out of descriptors wakes ten times a second
/// at most; short enough that a client queued when a descriptor frees up
/// waits no longer than a tenth of a second more.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The accepting side of an epoll server: the listener's entry in the
/// interest list, and whether it is paused.
///
/// It does not own the listening socket: the loop that registered the
/// socket keeps it, and passes it to each call.
#[derive(Debug)]
pub struct Acceptor {
    /// What the listener is registered with: EPOLLIN (and EPOLLET, for an
    /// edge-triggered server), and its token.
    interest: EpollFlags,
    token: u64,
    paused: bool,
}

impl Acceptor {
    /// For a listener registered with `interest` and `token`.
    pub fn new(interest: EpollFlags, token: u64) -> Self {
        Acceptor {
            interest,
            token,
            paused: false,
        }
    }

    /// The timeout for the next epoll_wait(2): none (sleep until something
    /// is ready), or [`ACCEPT_PAUSE`] while accepting is paused.
    pub fn timeout(&self) -> EpollTimeout {
        if self.paused {
            EpollTimeout::try_from(ACCEPT_PAUSE).expect("100 ms fits an epoll timeout")
        } else {
            EpollTimeout::NONE
        }
    }

    /// True while the listener is not watched.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Call after every epoll_wait(2): if accepting was paused, watch the
    /// listener again. If descriptors are still short, the next accept
    /// fails and pauses again, at most once per wakeup.
    pub fn resume(&mut self, epoll: &Epoll, listener: &impl AsFd) -> io::Result<()> {
        if self.paused {
            // epoll_ctl(EPOLL_CTL_MOD) with the old interest (ADD for an
            // exclusive entry, which `pause` deleted). The kernel re-checks
            // readiness as it does so: clients that queued up during the
            // pause are reported now, even edge-triggered.
            let mut interest = EpollEvent::new(self.interest, self.token);
            if self.is_exclusive() {
                epoll.add(listener, interest)?;
            } else {
                epoll.modify(listener, &mut interest)?;
            }
            self.paused = false;
        }
        Ok(())
    }

    /// Stops watching the listener until the next [`resume`](Self::resume).
    pub fn pause(&mut self, epoll: &Epoll, listener: &impl AsFd) -> io::Result<()> {
        if self.is_exclusive() {
            // EPOLL_CTL_MOD on an EPOLLEXCLUSIVE entry is EINVAL
            // (epoll_ctl(2)): take the entry out of the interest list.
            epoll.delete(listener)?;
        } else {
            // epoll_ctl(EPOLL_CTL_MOD) with no events: the entry stays in
            // the interest list but is never reported. (EPOLLHUP and
            // EPOLLERR are always reported, but a listening socket raises
            // neither.)
            let mut no_interest = EpollEvent::new(EpollFlags::empty(), self.token);
            epoll.modify(listener, &mut no_interest)?;
        }
        self.paused = true;
        Ok(())
    }

    /// Whether the listener's entry was added with EPOLLEXCLUSIVE, which
    /// no EPOLL_CTL_MOD may touch.
    fn is_exclusive(&self) -> bool {
        self.interest.contains(EpollFlags::EPOLLEXCLUSIVE)
    }

    /// accept(2) on the non-blocking `listener`: the next queued client, or
    /// `None` when there is none to take now.
    ///
    /// `None` means the queue is empty (EAGAIN), or accepting has just been
    /// paused because accept failed for a lasting reason (logged). A
    /// failure that concerns one client only is logged and skipped: the
    /// next client is tried at once. `Err` is an epoll_ctl failure, which
    /// no server can carry on from.
    pub fn accept(
        &mut self,
        epoll: &Epoll,
        listener: &TcpListener,
    ) -> io::Result<Option<(TcpStream, SocketAddr)>> {
        self.take(epoll, listener, TcpListener::accept)
    }

    /// Like [`accept`](Self::accept), but the new socket is non-blocking
    /// from its first moment: accept4(2) with SOCK_NONBLOCK sets O_NONBLOCK
    /// as it creates the fd, which saves the second system call that
    /// `set_nonblocking` would make. (The client's address is not asked
    /// for: nothing here uses it.)
    pub fn accept_nonblocking(
        &mut self,
        epoll: &Epoll,
        listener: &TcpListener,
    ) -> io::Result<Option<TcpStream>> {
        self.take(epoll, listener, |listener| {
            let flags = nix::libc::SOCK_NONBLOCK | nix::libc::SOCK_CLOEXEC;
            let (socket, _address) = SockRef::from(listener).accept4(flags)?;
            Ok(TcpStream::from(socket))
        })
    }

    /// Calls `accept` until it gives a client, says the queue is empty, or
    /// fails for a lasting reason (and pauses).
    fn take<T>(
        &mut self,
        epoll: &Epoll,
        listener: &TcpListener,
        mut accept: impl FnMut(&TcpListener) -> io::Result<T>,
    ) -> io::Result<Option<T>> {
        loop {
            match accept(listener) {
                Ok(client) => return Ok(Some(client)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                // EINTR: a signal arrived during the call; try again.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if crate::concerns_one_client(&err) => {
                    crate::warn(format_args!("accept failed: {err}"));
                }
                Err(err) => {
                    crate::warn(format_args!("accept failed, pausing: {err}"));
                    self.pause(epoll, listener)?;
                    return Ok(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use nix::sys::epoll::EpollCreateFlags;

    use super::*;

    /// A non-blocking listener on a free port, in a new epoll instance's
    /// interest list with `interest` (its fd as token), and its acceptor.
    fn watched_listener(interest: EpollFlags) -> (Epoll, TcpListener, Acceptor) {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let token = listener.as_raw_fd() as u64;
        epoll
            .add(&listener, EpollEvent::new(interest, token))
            .unwrap();
        (epoll, listener, Acceptor::new(interest, token))
    }

    /// Waits at most `ms` for events and returns how many came.
    fn wait(epoll: &Epoll, ms: u16) -> usize {
        let mut events = [EpollEvent::empty(); 8];
        epoll.wait(&mut events, ms).unwrap()
    }

    /// A queued client is accepted, and an empty queue is `None`, not an
    /// error.
    #[test]
    fn accepts_a_queued_client_then_reports_an_empty_queue() {
        let (epoll, listener, mut acceptor) = watched_listener(EpollFlags::EPOLLIN);
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(wait(&epoll, 5000), 1);
        assert!(acceptor.accept(&epoll, &listener).unwrap().is_some());
        assert!(acceptor.accept(&epoll, &listener).unwrap().is_none());
        assert!(!acceptor.is_paused());
        assert_eq!(acceptor.timeout(), EpollTimeout::NONE);
    }

    /// While paused, a queued client does not wake a level-triggered
    /// epoll_wait (no spin); after `resume`, the same client is reported
    /// again, edge-triggered too (no stranding).
    #[test]
    fn a_paused_listener_is_silent_and_reported_again_once_resumed() {
        for interest in [
            EpollFlags::EPOLLIN,
            EpollFlags::EPOLLIN | EpollFlags::EPOLLET,
        ] {
            let (epoll, listener, mut acceptor) = watched_listener(interest);
            let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            assert_eq!(
                wait(&epoll, 5000),
                1,
                "{interest:?}: the client is reported"
            );
            acceptor.pause(&epoll, &listener).unwrap();
            assert_eq!(
                acceptor.timeout(),
                EpollTimeout::try_from(ACCEPT_PAUSE).unwrap()
            );
            assert_eq!(wait(&epoll, 50), 0, "{interest:?}: silent while paused");
            acceptor.resume(&epoll, &listener).unwrap();
            assert!(!acceptor.is_paused());
            assert_eq!(wait(&epoll, 5000), 1, "{interest:?}: reported after resume");
            assert!(acceptor.accept(&epoll, &listener).unwrap().is_some());
        }
    }

    /// An EPOLLEXCLUSIVE entry cannot be modified (epoll_ctl(2): EINVAL),
    /// so pausing by EPOLL_CTL_MOD would fail; the acceptor deletes and
    /// re-adds it instead, and the queued client is reported again.
    #[test]
    fn an_exclusive_listener_pauses_by_delete_and_resumes_by_add() {
        let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
        let (epoll, listener, mut acceptor) = watched_listener(interest);
        // The kernel's rule, which the acceptor works around.
        let mut same = EpollEvent::new(interest, listener.as_raw_fd() as u64);
        assert_eq!(
            epoll.modify(&listener, &mut same),
            Err(nix::errno::Errno::EINVAL)
        );
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(wait(&epoll, 5000), 1, "the client is reported");
        acceptor.pause(&epoll, &listener).unwrap();
        assert_eq!(wait(&epoll, 50), 0, "silent while paused");
        acceptor.resume(&epoll, &listener).unwrap();
        assert_eq!(wait(&epoll, 5000), 1, "reported after resume");
        assert!(
            acceptor
                .accept_nonblocking(&epoll, &listener)
                .unwrap()
                .is_some()
        );
    }

    /// accept4(2) with SOCK_NONBLOCK: a read with nothing to read says
    /// EAGAIN at once instead of waiting.
    #[test]
    fn accept_nonblocking_gives_a_non_blocking_socket() {
        let (epoll, listener, mut acceptor) = watched_listener(EpollFlags::EPOLLIN);
        assert!(
            acceptor
                .accept_nonblocking(&epoll, &listener)
                .unwrap()
                .is_none()
        );
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(wait(&epoll, 5000), 1, "the client is reported");
        let mut stream = acceptor
            .accept_nonblocking(&epoll, &listener)
            .unwrap()
            .expect("the queued client");
        let mut byte = [0u8; 1];
        let err = std::io::Read::read(&mut stream, &mut byte).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
