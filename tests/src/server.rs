//! A server under test: started on a free port, its output collected, and
//! killed when the test ends.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::process;
use crate::raw::Killed;

/// How long a server may take to print its `listening on` line: building is
/// done before the clock starts, so this is start-up alone, on a busy box.
pub(crate) const STARTUP: Duration = Duration::from_secs(30);

/// A running example binary. Dropping it kills the process (SIGKILL) and
/// reaps it ([`Killed`]), so no server outlives its test, whether it passed
/// or panicked.
pub struct Server {
    name: String,
    child: Killed,
    addr: SocketAddr,
    stdout: Arc<Output>,
    stderr: Arc<Output>,
}

impl Server {
    /// Builds (if needed) and starts binary `name` with `args` (plus
    /// `--addr 127.0.0.1:0` unless they name an address), and waits for its
    /// `listening on` line.
    pub fn start(name: &str, args: &[&str]) -> Server {
        Server::start_with(name, args, |_| {})
    }

    /// Like [`start`](Self::start), with a chance to change the command
    /// first (environment, resource limits in `pre_exec`).
    pub fn start_with(name: &str, args: &[&str], configure: impl FnOnce(&mut Command)) -> Server {
        Server::launch(name, crate::binary(name), args, configure)
    }

    /// Like [`start_with`](Self::start_with), for the example program
    /// `example` of package `package` (see [`crate::binaries::example`]).
    pub fn start_example(
        package: &str,
        example: &str,
        args: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let program = crate::binaries::example(package, example);
        Server::launch(example, program, args, configure)
    }

    /// Starts `program`, called `name` in failure messages.
    fn launch(
        name: &str,
        program: std::path::PathBuf,
        args: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let mut command = Command::new(program);
        if !args.contains(&"--addr") {
            command.args(["--addr", "127.0.0.1:0"]);
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        configure(&mut command);
        // Killed at once: a panic from here on kills the child too.
        let mut child = Killed(
            command
                .spawn()
                .unwrap_or_else(|err| panic!("cannot start {name}: {err}")),
        );

        let stderr = Output::drain(child.0.stderr.take().unwrap());
        let (addr_tx, addr_rx) = mpsc::channel();
        let stdout = Arc::new(Output::default());
        let collected = Arc::clone(&stdout);
        let pipe = child.0.stdout.take().unwrap();
        thread::spawn(move || read_startup_then_drain(pipe, addr_tx, &collected));

        let mut server = Server {
            // Failure messages name the server with its arguments:
            // `example08_select_poll --poller select`.
            name: [name]
                .iter()
                .chain(args)
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            stdout,
            stderr,
        };
        match addr_rx.recv_timeout(STARTUP) {
            Ok(Some(addr)) => server.addr = addr,
            _ => panic!(
                "{name} did not print `listening on ADDR` within {STARTUP:?}; stderr:\n{}",
                server.stderr()
            ),
        }
        server
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Everything the server printed to stdout after its startup line.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Everything the server printed to stderr.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits until the stdout collected so far satisfies `done`.
    pub fn wait_for_stdout(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        self.stdout.wait_for(timeout, done)
    }

    /// Waits until the stderr collected so far satisfies `done`.
    pub fn wait_for_stderr(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        self.stderr.wait_for(timeout, done)
    }

    /// Open file descriptors of the server process.
    pub fn fd_count(&self) -> usize {
        process::fd_count(self.pid())
    }

    /// TCP connections the server holds open (its listener not counted).
    pub fn connections(&self) -> usize {
        process::tcp_connections(self.pid())
    }

    /// What the server holds: fds, epoll interest entries, connections.
    pub fn holdings(&self) -> Holdings {
        Holdings::of(self.pid())
    }

    /// Connects a client that says nothing, and returns it (still
    /// connected) with the event mask of the epoll interest entry the
    /// server holds for its connection, as the kernel shows it
    /// (/proc/PID/fdinfo: see [`process::epoll_interest`]). Panics if no
    /// such entry appears within a client's patience.
    ///
    /// The entry is the one whose fd is a TCP connection: not a new entry
    /// since some moment, which could be the listener's, registered just
    /// after the `listening on` line.
    pub fn silent_client_interest(&self) -> (TcpStream, u32) {
        let silent = crate::connect(self.addr());
        let mut entry = None;
        let found = crate::wait_until(crate::client::PATIENCE, || {
            let connections = process::connection_fds(self.pid());
            entry = process::epoll_interest(self.pid())
                .into_iter()
                .find(|(fd, _)| connections.contains(fd));
            entry.is_some()
        });
        assert!(found, "{} never registered the new connection", self.name);
        (silent, entry.unwrap().1)
    }

    /// Waits until the server holds no connection and returns what it holds
    /// then: the baseline a test compares against after its clients leave.
    /// Panics if connections are still open after the patience of a client.
    pub fn idle_holdings(&self) -> Holdings {
        let idle = crate::wait_until(crate::client::PATIENCE, || self.connections() == 0);
        assert!(
            idle,
            "the server still holds {} connections",
            self.connections()
        );
        self.holdings()
    }

    /// Waits until the server holds `baseline` again (its clients gone and
    /// cleaned up), and panics with what it holds instead if it does not.
    pub fn assert_back_to(&self, baseline: Holdings) {
        let mut now = baseline;
        let back = crate::wait_until(crate::client::PATIENCE, || {
            now = self.holdings();
            now == baseline
        });
        assert!(
            back,
            "{}: holds {now:?} after its clients left, {baseline:?} before\n\
             fds: {:?}\nepoll interest (fd, events): {:?}\nio_uring operations waiting: {:?}",
            self.name,
            process::fd_targets(self.pid()),
            process::epoll_interest(self.pid()),
            process::uring_waiting(self.pid()),
        );
    }

    /// Sends a signal (libc::SIGINT, SIGTERM, ...) to the server.
    pub fn signal(&self, signal: i32) {
        self.child.signal(signal);
    }

    /// Waits for the server to exit by itself, polling its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.wait_exit(timeout)
    }
}

/// What a server holds. After its clients have gone, a server that leaks
/// nothing holds what it held before they came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holdings {
    /// Open file descriptors (/proc/PID/fd).
    pub fds: usize,
    /// Entries in its epoll instances' interest lists (/proc/PID/fdinfo):
    /// one per connection in an epoll server's map.
    pub interest: usize,
    /// Operations waiting in its io_uring instances' poll lists
    /// (/proc/PID/fdinfo): one per connection with a recv in flight, in
    /// an io_uring server; none in the others.
    pub uring_waiting: usize,
    /// Open TCP connections (/proc/net/tcp).
    pub connections: usize,
    /// Threads (/proc/PID/status): one per connection in a server that
    /// gives each its own (example 7), constant in the others.
    pub threads: u64,
}

impl Holdings {
    /// What process `pid` holds, from /proc: for a server started some
    /// other way than [`Server`] (see [`crate::raw`]).
    pub fn of(pid: u32) -> Holdings {
        Holdings {
            fds: process::fd_count(pid),
            interest: process::epoll_interest(pid).len(),
            uring_waiting: process::uring_waiting(pid).len(),
            connections: process::tcp_connections(pid),
            threads: process::threads(pid),
        }
    }
}

/// Reads the first line, reports the address it names (or None), then keeps
/// reading so the server never writes into a full pipe, or a closed one.
fn read_startup_then_drain(
    pipe: ChildStdout,
    addr_tx: mpsc::Sender<Option<SocketAddr>>,
    output: &Output,
) {
    let mut reader = BufReader::new(pipe);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok());
    let _ = addr_tx.send(addr);
    output.collect(reader);
}

/// Bytes from a child's pipe, and a way to wait for what they say.
#[derive(Default)]
struct Output {
    bytes: Mutex<Vec<u8>>,
    grew: Condvar,
}

impl Output {
    fn drain(pipe: impl Read + Send + 'static) -> Arc<Output> {
        let output = Arc::new(Output::default());
        let collected = Arc::clone(&output);
        thread::spawn(move || collected.collect(pipe));
        output
    }

    fn collect(&self, mut pipe: impl Read) {
        let mut buffer = [0u8; 8192];
        while let Ok(n @ 1..) = pipe.read(&mut buffer) {
            self.bytes.lock().unwrap().extend_from_slice(&buffer[..n]);
            self.grew.notify_all();
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut bytes = self.bytes.lock().unwrap();
        loop {
            if done(&String::from_utf8_lossy(&bytes)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            bytes = self.grew.wait_timeout(bytes, left).unwrap().0;
        }
    }
}
