//! Example 10: the e3 URL echo server, its event loop reused by other
//! servers, and the page a real browser shows.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use example10_event_loop::{Control, EpollFlags, EventLoop, Handler, Server as LoopServer, Token};
use tests::browser::{chromium, dump_dom};
use tests::client::PATIENCE;
use tests::{RESPONSE, Server, request};

const NAME: &str = "example10_event_loop";

/// The status line, headers and body of one response, with the checks every
/// echo response must pass: plain text, nosniff, and a Content-Length that
/// is the body's length in bytes.
fn echo(server: &Server, target: &[u8]) -> (String, Vec<u8>) {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let response = request(server.addr(), &req);
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a blank line after the headers");
    let head = String::from_utf8(response[..end].to_vec()).unwrap();
    let body = response[end + 4..].to_vec();
    let length = format!("\r\nContent-Length: {}\r\n", body.len());
    assert!(format!("{head}\r\n").contains(&length), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("\r\nX-Content-Type-Options: nosniff"),
        "{head}"
    );
    (head.lines().next().unwrap().to_owned(), body)
}

/// `/hello` comes back as `hello`; the request is printed (no `--quiet`);
/// and afterwards the server holds what it held before (e3 keeps every
/// request and response in its dicts for ever).
#[test]
fn hello_is_echoed_with_its_length() {
    let server = Server::start(NAME, &[]);
    let baseline = server.idle_holdings();
    let (status, body) = echo(&server, b"/hello");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert_eq!(body, b"hello");
    assert!(server.wait_for_stdout(PATIENCE, |out| out.contains("GET /hello HTTP/1.0")));
    for _ in 0..50 {
        assert_eq!(echo(&server, b"/again").1, b"again");
    }
    server.assert_back_to(baseline);
}

/// `/` has nothing to echo: the answer says what to add to the URL.
#[test]
fn an_empty_path_gets_the_hint() {
    let server = Server::start(NAME, &["--quiet"]);
    let (status, body) = echo(&server, b"/");
    assert_eq!(status, "HTTP/1.0 200 OK");
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("Add something to the URL"), "{body}");
}

/// Percent-escapes are decoded; non-ASCII text is counted in bytes (e3
/// counts characters and cuts the body short); bytes that are not UTF-8
/// become U+FFFD instead of crashing the server.
#[test]
fn encoded_and_non_ascii_paths() {
    let server = Server::start(NAME, &["--quiet"]);
    assert_eq!(
        echo(&server, b"/hello%20w%C3%B3rld").1,
        "hello wórld".as_bytes()
    );
    assert_eq!(echo(&server, "/żółw".as_bytes()).1, "żółw".as_bytes());
    assert_eq!(
        echo(&server, b"/a%FFb\xfe").1,
        "a\u{fffd}b\u{fffd}".as_bytes()
    );
    // Markup comes back as the characters it is, in a text/plain body.
    assert_eq!(echo(&server, b"/%3Cscript%3E").1, b"<script>");
    // The server is still up after all that.
    assert_eq!(echo(&server, b"/still-here").1, b"still-here");
}

/// A path of 8 KiB is refused with 414, not echoed.
#[test]
fn an_8_kib_path_is_refused_with_414() {
    let server = Server::start(NAME, &["--quiet"]);
    let mut target = b"/".to_vec();
    target.resize(8 * 1024, b'a');
    let (status, body) = echo(&server, &target);
    assert_eq!(status, "HTTP/1.0 414 URI Too Long");
    assert!(String::from_utf8(body).unwrap().contains("URI too long"));
}

/// A request line that is not `METHOD PATH VERSION` gets 400, and the
/// next client is served.
#[test]
fn a_malformed_request_line_gets_400_and_the_server_goes_on() {
    let server = Server::start(NAME, &["--quiet"]);
    let response = request(server.addr(), b"NONSENSE\r\n\r\n");
    assert!(response.starts_with(b"HTTP/1.0 400 Bad Request\r\n"));
    assert_eq!(echo(&server, b"/ok").1, b"ok");
}

/// SIGTERM stops the server with status 0, a client still connected.
#[test]
fn sigterm_exits_0() {
    let mut server = Server::start(NAME, &["--quiet"]);
    let _idle = tests::connect(server.addr());
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(PATIENCE).expect("the server did not stop");
    assert_eq!(status.code(), Some(0), "{status}");
}

// ---------------------------------------------------------------------------
// The loop is a library: other servers run on it, side by side.

/// A server that is not HTTP at all, written against the loop's `Handler`
/// trait only: it greets each client with one line and closes.
struct Greeter(TcpListener);

impl Handler for Greeter {
    fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    fn ready(&mut self, _: &mut EventLoop, _: Token, _: EpollFlags) -> Control {
        // Level-triggered: one accept per event; the loop calls again while
        // clients wait. The write fits in an empty send buffer.
        if let Ok((mut stream, _)) = self.0.accept() {
            let _ = stream.write_all(b"greetings from a handler\n");
        }
        Control::Keep
    }
}

/// One loop, three servers: the echo, the tutorial's fixed hello-world
/// responder, and a hand-written handler. All answer; then the loop stops
/// and `run` returns.
#[test]
fn one_loop_runs_several_kinds_of_server() {
    let echo_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hello_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let greeter_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs: Vec<SocketAddr> = [&echo_listener, &hello_listener, &greeter_listener]
        .iter()
        .map(|l| l.local_addr().unwrap())
        .collect();

    // The loop and its handlers are not Send (handlers hold `Rc`s): build
    // them on the thread that runs them, and send back only a stop handle.
    let (stop_tx, stop_rx) = mpsc::channel();
    let looper = thread::spawn(move || {
        let mut event_loop = EventLoop::new().unwrap();
        let echo = LoopServer::new(|request| example10_event_loop::echo::respond(request.head()));
        echo.listen(&mut event_loop, echo_listener).unwrap();
        let hello = LoopServer::new(|_request| RESPONSE.to_vec());
        hello.listen(&mut event_loop, hello_listener).unwrap();
        greeter_listener.set_nonblocking(true).unwrap();
        event_loop
            .register(Greeter(greeter_listener), EpollFlags::EPOLLIN)
            .unwrap();
        stop_tx.send(event_loop.stop_handle().unwrap()).unwrap();
        event_loop.run().unwrap();
        event_loop.len()
    });
    let stop = stop_rx.recv_timeout(PATIENCE).expect("the loop started");

    let get = |path: &str| format!("GET {path} HTTP/1.0\r\n\r\n").into_bytes();
    let echoed = request(addrs[0], &get("/reused"));
    assert!(echoed.ends_with(b"\r\n\r\nreused"), "{echoed:?}");
    assert_eq!(request(addrs[1], &get("/")), RESPONSE);
    let mut greeting = String::new();
    tests::connect(addrs[2])
        .read_to_string(&mut greeting)
        .unwrap();
    assert_eq!(greeting, "greetings from a handler\n");
    // Interleaved: the servers do not get in each other's way.
    for i in 0..20 {
        let echoed = request(addrs[0], &get(&format!("/n{i}")));
        assert!(echoed.ends_with(format!("n{i}").as_bytes()));
        assert_eq!(request(addrs[1], &get("/")), RESPONSE);
    }

    stop.stop();
    let left = looper.join().expect("the loop thread panicked");
    // Stopped, not emptied: the three listeners and the stop handle's
    // eventfd are still registered (plus, perhaps, a connection whose last
    // event, the EPOLLHUP after its shutdown, had not come yet).
    assert!(left >= 4, "{left} handlers");
}

// ---------------------------------------------------------------------------
// A real browser.

/// The article shows the echo in a browser. A real one shows the path as
/// text, markup included: with text/plain and nosniff, `<b>` is escaped in
/// the DOM (`&lt;b&gt;`), never an element.
#[test]
fn a_headless_browser_shows_the_path_as_text() {
    let Some(browser) = chromium() else { return };
    let server = Server::start(NAME, &["--quiet"]);
    let url = format!("http://{}/%3Cb%3Ebold%3C%2Fb%3E%20caf%C3%A9", server.addr());
    let dom = dump_dom(browser, &url);
    assert!(dom.contains("&lt;b&gt;bold&lt;/b&gt; café"), "DOM: {dom}");
    assert!(!dom.contains("<b>"), "the path was rendered as HTML: {dom}");
}

/// What trips up example02 (one client at a time) in a browser: Chromium
/// opens a second connection right after its first request, before it has
/// anything to send on it (a preconnect). In most runs that connection
/// stays idle until the browser exits; in others the browser uses it later
/// for `/favicon.ico`. A blocking one-at-a-time server accepts it after the
/// first request and sits in read(2) on it: while it is idle, every other
/// client (the browser's own next request included) waits. Pinned here with
/// a listener that records each connection's request line; the reliable
/// part is the extra connection, not what travels on it.
#[test]
fn a_browser_opens_more_connections_than_the_page_needs() {
    let Some(browser) = chromium() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (line_tx, line_rx) = mpsc::channel::<String>();
    // Thread per connection, so no connection waits for another.
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let line_tx = line_tx.clone();
            thread::spawn(move || line_tx.send(serve_and_record(stream)));
        }
    });
    dump_dom(browser, &format!("http://{addr}/page"));
    // The browser has exited: every connection it opened is closed, so each
    // has reported its request line (empty when it sent nothing).
    let mut lines = Vec::new();
    while let Ok(line) = line_rx.recv_timeout(Duration::from_secs(5)) {
        lines.push(line);
    }
    let pages = lines.iter().filter(|l| l.starts_with("GET /page ")).count();
    assert_eq!(pages, 1, "request lines, one per connection: {lines:?}");
    assert!(
        lines.len() >= 2,
        "one connection for one page this time: {lines:?}"
    );
}

/// Answers a request if one comes; returns its request line, or an empty
/// string if the client closed without sending one.
fn serve_and_record(mut stream: TcpStream) -> String {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buffer) {
        received.extend_from_slice(&buffer[..n]);
        if received.windows(4).any(|w| w == b"\r\n\r\n") {
            let _ = stream.write_all(RESPONSE);
            break;
        }
    }
    let text = String::from_utf8_lossy(&received);
    text.lines().next().unwrap_or_default().to_owned()
}
