//! A server on the loop: an accept handler for the listener, and a handler
//! per connection that reads one request, answers it, and closes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::rc::Rc;

use common::{Progress, RequestBuffer, is_transient};
use nix::sys::epoll::EpollFlags;

use crate::event_loop::{Control, EventLoop, Handler, Token};

/// Edge-triggered reading: the interest of listeners and new connections.
const EDGE_IN: EpollFlags = EpollFlags::EPOLLIN.union(EpollFlags::EPOLLET);
/// Edge-triggered writing: a connection with a response to send.
const EDGE_OUT: EpollFlags = EpollFlags::EPOLLOUT.union(EpollFlags::EPOLLET);

/// What a server does with a complete request: the response bytes.
///
/// It gets the request as collected (its [`head`](RequestBuffer::head) is
/// the request line and headers) and returns everything to send, status
/// line included. The connection closes after it.
pub type Responder = dyn Fn(&RequestBuffer) -> Vec<u8>;

// ANCHOR: server
/// e3's `Server`: listens, and answers every request with what its
/// responder returns.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use example10_event_loop::{EventLoop, Server};
///
/// let mut event_loop = EventLoop::new()?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:8080")?;
/// let server = Server::new(|_request| b"HTTP/1.0 204 No Content\r\n\r\n".to_vec());
/// server.listen(&mut event_loop, listener)?;
/// event_loop.run()
/// # }
/// ```
pub struct Server {
    responder: Rc<Responder>,
}
// ANCHOR_END: server

impl Server {
    /// A server that answers each request with `responder(request)`.
    pub fn new(responder: impl Fn(&RequestBuffer) -> Vec<u8> + 'static) -> Server {
        Server {
            responder: Rc::new(responder),
        }
    }

    // ANCHOR: listen
    /// Registers `listener` on `event_loop` with this server's accept
    /// handler. The listener is made non-blocking; the server can listen on
    /// several sockets, and several servers can share a loop.
    ///
    /// e3's `listen(port)` also creates the socket. Taking a bound listener
    /// instead lets the caller choose the address (tests bind port 0) and
    /// report errors before the loop exists.
    pub fn listen(&self, event_loop: &mut EventLoop, listener: TcpListener) -> io::Result<Token> {
        listener.set_nonblocking(true)?;
        let acceptor = Acceptor {
            listener,
            responder: Rc::clone(&self.responder),
        };
        event_loop.register(acceptor, EDGE_IN)
    }
    // ANCHOR_END: listen
}

/// The listener's handler: e3's `accept_connection`.
struct Acceptor {
    listener: TcpListener,
    responder: Rc<Responder>,
}

// ANCHOR: accept
impl Handler for Acceptor {
    fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    fn ready(&mut self, event_loop: &mut EventLoop, token: Token, _: EpollFlags) -> Control {
        // Edge-triggered: one event for however many queued clients. Accept
        // until EAGAIN (e3 accepts one per event and strands the rest).
        loop {
            match self.listener.accept() {
                Ok((stream, _peer)) => self.register(event_loop, stream),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Control::Keep,
                Err(err) if common::concerns_one_client(&err) => {
                    common::warn(format_args!("accept failed: {err}"));
                }
                Err(err) => {
                    // Out of descriptors: pause, and let the loop re-arm the
                    // listener shortly, which re-checks the queue.
                    common::warn(format_args!("accept failed, pausing: {err}"));
                    if let Err(err) = event_loop.rearm_soon(token, self.fd(), EDGE_IN) {
                        common::warn(format_args!("cannot pause the listener: {err}"));
                        return Control::Remove;
                    }
                    return Control::Keep;
                }
            }
        }
    }
}

impl Acceptor {
    fn register(&self, event_loop: &mut EventLoop, stream: TcpStream) {
        let connection = Connection {
            stream,
            request: RequestBuffer::new(),
            response: Vec::new(),
            sent: 0,
            responder: Rc::clone(&self.responder),
        };
        let registered = connection
            .stream
            .set_nonblocking(true)
            .and_then(|()| event_loop.register(connection, EDGE_IN).map(drop));
        if let Err(err) = registered {
            // The connection was dropped (closed) with the error.
            common::warn(format_args!("cannot watch a new connection: {err}"));
        }
    }
}
// ANCHOR_END: accept

/// One client: its request as it arrives, then its response as it leaves.
/// e3 keeps these in three dicts inside the loop and never deletes two of
/// them; here they live and die with the handler.
struct Connection {
    stream: TcpStream,
    request: RequestBuffer,
    response: Vec<u8>,
    sent: usize,
    responder: Rc<Responder>,
}

// ANCHOR: connection
impl Handler for Connection {
    fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    fn ready(&mut self, event_loop: &mut EventLoop, token: Token, events: EpollFlags) -> Control {
        let outcome = if !self.response.is_empty() {
            self.write(event_loop, token, events)
        } else {
            self.read(event_loop, token)
        };
        match outcome {
            Ok(control) => control,
            // A reset, a broken pipe, a client gone early: close it.
            Err(_) => Control::Remove,
        }
    }
}

impl Connection {
    /// Reads until EAGAIN (edge-triggered), then answers a complete request.
    fn read(&mut self, event_loop: &mut EventLoop, token: Token) -> io::Result<Control> {
        let mut buffer = [0u8; 1024];
        let progress = loop {
            match self.stream.read(&mut buffer) {
                // The client closed before its request was complete. e3's
                // `while True: recv` gets b'' here for ever: a hang.
                Ok(0) => return Ok(Control::Remove),
                Ok(n) => match self.request.push(&buffer[..n]) {
                    Progress::Incomplete => {}
                    done => break done,
                },
                Err(err) if is_transient(&err) => return Ok(Control::Keep),
                Err(err) => return Err(err),
            }
        };
        self.response = match progress {
            Progress::TooLarge => common::response::TOO_LARGE.to_vec(),
            _ => (self.responder)(&self.request),
        };
        if self.response.is_empty() {
            // Nothing to say: close.
            return Ok(Control::Remove);
        }
        // Wait for room in the send buffer; modifying re-checks readiness,
        // so there is an event at once if there is room now.
        event_loop.modify(token, self.fd(), EDGE_OUT)?;
        Ok(Control::Keep)
    }

    /// Writes until the response is sent or EAGAIN, then closes.
    fn write(
        &mut self,
        event_loop: &mut EventLoop,
        token: Token,
        events: EpollFlags,
    ) -> io::Result<Control> {
        if self.sent == self.response.len() {
            // Sent and shut down earlier: this is the EPOLLHUP that says
            // both directions are closed. Remove (and close) the socket.
            return Ok(Control::Remove);
        }
        if !events.contains(EpollFlags::EPOLLOUT) {
            return Ok(Control::Remove);
        }
        while self.sent < self.response.len() {
            match self.stream.write(&self.response[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(err) if is_transient(&err) => return Ok(Control::Keep),
                Err(err) => return Err(err),
            }
        }
        // As in example 4: watch for nothing more and shut both directions;
        // the kernel sends FIN after the response, and the EPOLLHUP that
        // follows closes the socket (above). Closing right now, with
        // request bytes still unread, would send RST instead, and the client
        // could lose the response.
        event_loop.modify(token, self.fd(), EpollFlags::EPOLLET)?;
        self.stream.flush()?;
        self.stream.shutdown(Shutdown::Both)?;
        Ok(Control::Keep)
    }
}
// ANCHOR_END: connection
