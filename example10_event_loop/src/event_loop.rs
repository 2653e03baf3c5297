//! The event loop: one epoll instance, and a handler for each watched fd.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signalfd::SignalFd;

// ANCHOR: handler
/// Names one registered handler. The loop gives it out on
/// [`register`](EventLoop::register) and epoll hands it back with each
/// event.
///
/// e3 uses the fd number, as the HOWTO does. That number is reused as soon
/// as the fd is closed: a connection closed by one event of a batch and a
/// new connection accepted by the next can share it, and an event still
/// queued for the old one would reach the new one. A counter that never
/// repeats cannot mix them up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u64);

/// What a handler wants after handling an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep the handler and its fd registered.
    Keep,
    /// Unregister the handler and drop it (which closes the fd it owns).
    Remove,
}

/// Code that runs when its file descriptor is ready: e3's "handler".
///
/// A handler owns its fd (a listener, a connection, a signalfd...), so the
/// loop can close it by dropping the handler.
pub trait Handler {
    /// The fd epoll watches for this handler.
    fn fd(&self) -> BorrowedFd<'_>;

    /// Called with the flags epoll reported (`EPOLLIN`, `EPOLLOUT`,
    /// `EPOLLHUP`...). `event_loop` is the loop itself: register new
    /// handlers, change this one's interest, or stop.
    ///
    /// Events may be spurious (nothing to read after all): use
    /// non-blocking fds and treat `WouldBlock` as "nothing now".
    fn ready(&mut self, event_loop: &mut EventLoop, token: Token, events: EpollFlags) -> Control;
}
// ANCHOR_END: handler

// ANCHOR: event_loop
/// An epoll instance and the handlers of the fds it watches.
///
/// Create one, register handlers (a [`Server`](crate::Server) registers its
/// own), then [`run`](Self::run) it until something calls
/// [`stop`](Self::stop), a [`StopHandle`] fires, or a stop signal comes
/// (see [`stop_on_signals`](Self::stop_on_signals)).
pub struct EventLoop {
    epoll: Epoll,
    handlers: HashMap<Token, Box<dyn Handler>>,
    next_token: u64,
    stopped: bool,
    /// fds whose interest was switched off, to switch on again after the
    /// next wait: see [`rearm_soon`](Self::rearm_soon).
    rearm: Vec<(Token, EpollFlags)>,
}
// ANCHOR_END: event_loop

/// How long [`EventLoop::run`] waits at most while an fd awaits re-arming.
const REARM_AFTER: Duration = Duration::from_millis(100);

impl EventLoop {
    /// A new loop with its own epoll instance (epoll_create1(2)).
    pub fn new() -> io::Result<EventLoop> {
        Ok(EventLoop {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            handlers: HashMap::new(),
            next_token: 0,
            stopped: false,
            rearm: Vec::new(),
        })
    }

    // ANCHOR: register
    /// Starts watching `handler`'s fd for `interest` (EPOLLIN, EPOLLOUT,
    /// with EPOLLET for edge-triggered) and calls the handler on each event.
    pub fn register(
        &mut self,
        handler: impl Handler + 'static,
        interest: EpollFlags,
    ) -> io::Result<Token> {
        let token = Token(self.next_token);
        self.next_token += 1;
        // epoll_ctl(EPOLL_CTL_ADD): the token travels with every event.
        self.epoll
            .add(handler.fd(), EpollEvent::new(interest, token.0))?;
        self.handlers.insert(token, Box::new(handler));
        Ok(token)
    }
    // ANCHOR_END: register

    /// Changes what the fd of `token` is watched for (epoll_ctl(2)
    /// EPOLL_CTL_MOD); a handler calls it with its own fd, for example to
    /// wait for EPOLLOUT once it has something to send.
    pub fn modify(&self, token: Token, fd: BorrowedFd<'_>, interest: EpollFlags) -> io::Result<()> {
        let mut event = EpollEvent::new(interest, token.0);
        Ok(self.epoll.modify(fd, &mut event)?)
    }

    /// Stops watching `fd` now, and sets its interest back to `interest`
    /// after the next wakeup, or 100 ms from now at the latest.
    ///
    /// For a listener that cannot accept (out of file descriptors): its
    /// queued clients keep it ready, so watching it level-triggered would
    /// spin, and edge-triggered would not report them again. Re-arming
    /// makes epoll check it afresh.
    pub fn rearm_soon(
        &mut self,
        token: Token,
        fd: BorrowedFd<'_>,
        interest: EpollFlags,
    ) -> io::Result<()> {
        self.modify(token, fd, EpollFlags::empty())?;
        self.rearm.push((token, interest));
        Ok(())
    }

    /// Makes [`run`](Self::run) return once the current event is handled.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// How many handlers are registered (a server's listener, its
    /// connections, ...).
    pub fn len(&self) -> usize {
        self.handlers.len()
    }

    /// True when no handler is registered.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    /// A handle that stops this loop from another thread. Each call
    /// registers one eventfd, which stays until the loop is dropped.
    pub fn stop_handle(&mut self) -> io::Result<StopHandle> {
        // eventfd(2): a counter in the kernel, readable while non-zero.
        let flags = EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK;
        let eventfd = Arc::new(EventFd::from_value_and_flags(0, flags)?);
        self.register(
            StopOnEvent(StopSource::Wake(Arc::clone(&eventfd))),
            EpollFlags::EPOLLIN,
        )?;
        Ok(StopHandle(eventfd))
    }

    /// Stops the loop when SIGINT or SIGTERM arrives, through a signalfd
    /// made by [`common::stop_signals`] (call that first thing in `main`).
    pub fn stop_on_signals(&mut self, signals: SignalFd) -> io::Result<Token> {
        self.register(
            StopOnEvent(StopSource::Signals(signals)),
            EpollFlags::EPOLLIN,
        )
    }

    // ANCHOR: run
    /// Waits for events and calls their handlers, until stopped.
    ///
    /// Returns `Ok` when stopped; an error only if epoll_wait itself fails.
    /// Handlers stay registered: `run` can be called again.
    pub fn run(&mut self) -> io::Result<()> {
        self.stopped = false;
        let mut events = [EpollEvent::empty(); 64];
        while !self.stopped {
            let timeout = if self.rearm.is_empty() {
                EpollTimeout::NONE
            } else {
                EpollTimeout::try_from(REARM_AFTER).expect("100 ms fits")
            };
            // epoll_wait(2). EINTR (a signal, or SIGSTOP/SIGCONT) is not an
            // error: wait again.
            let ready = match self.epoll.wait(&mut events, timeout) {
                Ok(ready) => ready,
                Err(Errno::EINTR) => continue,
                Err(err) => return Err(err.into()),
            };
            for (token, interest) in std::mem::take(&mut self.rearm) {
                if let Some(handler) = self.handlers.get(&token) {
                    self.modify(token, handler.fd(), interest)?;
                }
            }
            for event in &events[..ready] {
                let token = Token(event.data());
                // Take the handler out of the map while it runs, so that it
                // can have `&mut self` (to register others) while we hold
                // it. A token not in the map belongs to a handler removed
                // earlier in this batch: its event is stale.
                let Some(mut handler) = self.handlers.remove(&token) else {
                    continue;
                };
                match handler.ready(self, token, event.events()) {
                    Control::Keep => {
                        self.handlers.insert(token, handler);
                    }
                    Control::Remove => {
                        // epoll_ctl(EPOLL_CTL_DEL), then drop: close(2).
                        let _ = self.epoll.delete(handler.fd());
                    }
                }
                if self.stopped {
                    break;
                }
            }
        }
        Ok(())
    }
    // ANCHOR_END: run
}

/// Stops an [`EventLoop`] from any thread: [`stop`](Self::stop) makes the
/// loop's eventfd readable, and the loop's handler for it stops the loop.
#[derive(Clone)]
pub struct StopHandle(Arc<EventFd>);

impl StopHandle {
    /// Asks the loop to stop; returns at once. Stopping a loop that has
    /// already stopped, or been dropped, does nothing.
    pub fn stop(&self) {
        // write(2) adds 1 to the eventfd's counter: it becomes readable.
        let _ = self.0.write(1);
    }
}

enum StopSource {
    Wake(Arc<EventFd>),
    Signals(SignalFd),
}

/// The handler behind [`StopHandle`] and
/// [`stop_on_signals`](EventLoop::stop_on_signals).
struct StopOnEvent(StopSource);

impl Handler for StopOnEvent {
    fn fd(&self) -> BorrowedFd<'_> {
        match &self.0 {
            StopSource::Wake(eventfd) => eventfd.as_fd(),
            StopSource::Signals(signals) => signals.as_fd(),
        }
    }

    fn ready(&mut self, event_loop: &mut EventLoop, _: Token, _: EpollFlags) -> Control {
        // Consume what made the fd readable (the counter, the pending
        // signal), so that a loop run again does not stop at once.
        match &self.0 {
            StopSource::Wake(eventfd) => {
                let _ = eventfd.read();
            }
            StopSource::Signals(signals) => {
                let _ = signals.read_signal();
            }
        }
        event_loop.stop();
        Control::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// Counts the events of one end of a socket pair; removes itself after
    /// `limit`.
    struct Counter {
        stream: UnixStream,
        seen: std::rc::Rc<std::cell::Cell<u32>>,
        limit: u32,
    }

    impl Handler for Counter {
        fn fd(&self) -> BorrowedFd<'_> {
            self.stream.as_fd()
        }
        fn ready(&mut self, event_loop: &mut EventLoop, _: Token, _: EpollFlags) -> Control {
            self.seen.set(self.seen.get() + 1);
            if self.seen.get() == self.limit {
                event_loop.stop();
                return Control::Remove;
            }
            Control::Keep
        }
    }

    #[test]
    fn a_handler_can_stop_the_loop_and_remove_itself() {
        let mut event_loop = EventLoop::new().unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let seen = std::rc::Rc::default();
        let counter = Counter {
            stream: ours,
            seen: std::rc::Rc::clone(&seen),
            limit: 3,
        };
        event_loop.register(counter, EpollFlags::EPOLLIN).unwrap();
        // Level-triggered and never read: every wait reports it again.
        std::io::Write::write_all(&mut theirs, b"x").unwrap();
        event_loop.run().unwrap();
        assert_eq!(seen.get(), 3);
        assert!(event_loop.is_empty());
    }

    #[test]
    fn a_stop_handle_stops_the_loop_from_another_thread() {
        let mut event_loop = EventLoop::new().unwrap();
        let stop = event_loop.stop_handle().unwrap();
        let thread = std::thread::spawn(move || stop.stop());
        event_loop.run().unwrap();
        thread.join().unwrap();
        // The handle's own handler stays: the loop can run again.
        assert_eq!(event_loop.len(), 1);
    }

    #[test]
    fn tokens_are_never_reused() {
        let mut event_loop = EventLoop::new().unwrap();
        let mut tokens = std::collections::HashSet::new();
        for _ in 0..10 {
            let (ours, _theirs) = UnixStream::pair().unwrap();
            let counter = Counter {
                stream: ours,
                seen: Default::default(),
                limit: 1,
            };
            // Same fd number each time (the previous pair is closed), new
            // token each time.
            assert!(tokens.insert(event_loop.register(counter, EpollFlags::EPOLLIN).unwrap()));
            event_loop.handlers.clear();
        }
    }
}
