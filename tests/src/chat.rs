//! The chat server (example 12) from its clients' side: join, say lines,
//! read lines; the numbered lines a flood sends, which a reader can check
//! (each whole, and in order per sender) without scanning them; and a
//! pace that keeps a flood's senders within reach of its readers.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::client::PATIENCE;

/// The chat server's binary.
pub const CHAT: &str = "example12_chat";

/// A chat client: its connection, read through a buffer, and the name the
/// server gave it.
pub struct Chatter {
    /// For writing (and socket options); reads go through `reader`.
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// `client 7`, from the welcome line.
    pub name: String,
}

impl Chatter {
    /// Connects to the chat at `addr` and reads its welcome line
    /// (`you are client 7; 3 other clients here`).
    pub fn join(addr: SocketAddr) -> Chatter {
        let stream = crate::connect(addr);
        let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone().unwrap());
        let mut welcome = Vec::new();
        reader
            .read_until(b'\n', &mut welcome)
            .unwrap_or_else(|err| panic!("no welcome from {addr}: {err}"));
        let text = String::from_utf8_lossy(&welcome);
        let name = text
            .strip_prefix("you are ")
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_else(|| panic!("not a welcome: {text:?}"))
            .to_owned();
        Chatter {
            stream,
            reader,
            name,
        }
    }

    /// Sends `bytes` (lines, newlines included, or not).
    pub fn say(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|err| panic!("{} cannot send: {err}", self.name));
    }

    /// The next line, its newline included; an empty vector at the end of
    /// the stream. Panics after [`PATIENCE`] without one.
    pub fn line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        self.reader
            .read_until(b'\n', &mut line)
            .unwrap_or_else(|err| panic!("{} got no line: {err}; {line:?}", self.name));
        line
    }

    /// Reads lines until one satisfies `wanted`, and returns them all, that
    /// one last. Panics if the stream ends first.
    pub fn until(&mut self, wanted: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        loop {
            let line = self.line();
            assert!(
                !line.is_empty(),
                "{}: the stream ended; lines so far: {:?}",
                self.name,
                lines.iter().map(|l| text(l)).collect::<Vec<String>>()
            );
            let done = wanted(&line);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Reads lines until one equals `line` exactly; returns those before it.
    pub fn until_line(&mut self, line: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = self.until(|got| got == line);
        lines.pop();
        lines
    }

    /// Reads to the end of the stream: the bytes, and how it ended (`Ok`
    /// for FIN, or the error: a reset). Panics after [`PATIENCE`].
    pub fn rest(&mut self) -> (Vec<u8>, std::io::Result<()>) {
        let deadline = Instant::now() + PATIENCE;
        let mut bytes = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "{}: no end", self.name);
            let buffer = match self.reader.fill_buf() {
                Ok([]) => return (bytes, Ok(())),
                Ok(buffer) => buffer,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => return (bytes, Err(err)),
            };
            let n = buffer.len();
            bytes.extend_from_slice(buffer);
            self.reader.consume(n);
        }
    }

    /// Leaves with a reset (RST) instead of the orderly FIN (see
    /// [`crate::client::reset`]). The reader holds a second fd for the
    /// same socket: both must go before close(2) acts.
    pub fn reset(self) {
        socket2::SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }

    /// How long a read may wait (the default is [`PATIENCE`]).
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    /// The buffered reader, for a test that reads in its own way.
    pub fn reader(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }
}

/// Keeps the senders of a test at most a window of bytes ahead of the
/// slowest of its readers.
///
/// The chat cuts off a client that is owed more than --max-queue beyond
/// what the kernel's buffers hold. A reader that the test machine's load
/// keeps off a CPU for a moment, while senders flood the chat as fast as
/// it takes their lines, can fall that far behind: it would be cut off
/// for being slow, which is not what a test of a client that stops
/// reading means to show. With the senders paced by what the readers have
/// read, the readers' lines fit in the kernel's buffers and the server
/// queues nothing for them; a client that does not read at all is no
/// reader here, and nobody waits for it.
pub struct Pace {
    window: usize,
    /// Per client, bytes of lines it has sent.
    sent: Vec<AtomicUsize>,
    /// Per client, bytes of the others' lines it has read, or None for a
    /// client that does not read.
    read: Vec<Option<AtomicUsize>>,
    /// Set when the test needs no more lines: senders stop waiting.
    finished: AtomicBool,
    lock: Mutex<()>,
    moved: Condvar,
}

impl Pace {
    /// A pace for clients `0..reads.len()`, client `i` a reader if
    /// `reads[i]`, senders kept at most `window` bytes ahead.
    pub fn new(window: usize, reads: &[bool]) -> Arc<Pace> {
        Arc::new(Pace {
            window,
            sent: reads.iter().map(|_| AtomicUsize::new(0)).collect(),
            read: reads
                .iter()
                .map(|&reads| reads.then(|| AtomicUsize::new(0)))
                .collect(),
            finished: AtomicBool::new(false),
            lock: Mutex::new(()),
            moved: Condvar::new(),
        })
    }

    /// No more lines are needed: a sender waiting for the readers stops
    /// waiting, and [`finished`](Self::finished) says so.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::Relaxed);
        let _guard = self.lock.lock().unwrap();
        self.moved.notify_all();
    }

    /// Whether [`finish`](Self::finish) was called.
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }

    /// Client `who` has sent `bytes` more of lines.
    pub fn sent(&self, who: usize, bytes: usize) {
        self.sent[who].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Client `who` has read `bytes` more of the others' lines.
    pub fn read(&self, who: usize, bytes: usize) {
        if let Some(read) = &self.read[who] {
            read.fetch_add(bytes, Ordering::Relaxed);
            // Under the lock: a sender between its check and its wait
            // cannot miss this.
            let _guard = self.lock.lock().unwrap();
            self.moved.notify_all();
        }
    }

    /// How far the slowest reader is behind: bytes the others sent that
    /// it has not read.
    fn lag(&self) -> usize {
        let sent: Vec<usize> = self
            .sent
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        let total: usize = sent.iter().sum();
        self.read
            .iter()
            .enumerate()
            .filter_map(|(who, read)| {
                let read = read.as_ref()?.load(Ordering::Relaxed);
                Some((total - sent[who]).saturating_sub(read))
            })
            .max()
            .unwrap_or(0)
    }

    /// Waits until the slowest reader is less than the window behind, or
    /// the pace is finished. Panics if the readers read nothing for
    /// [`PATIENCE`].
    pub fn wait_for_readers(&self) {
        let mut guard = self.lock.lock().unwrap();
        let mut lag = self.lag();
        let mut since = Instant::now();
        while lag >= self.window && !self.finished() {
            assert!(
                since.elapsed() < PATIENCE,
                "the readers read nothing for {PATIENCE:?}, {lag} bytes behind"
            );
            guard = self
                .moved
                .wait_timeout(guard, Duration::from_millis(100))
                .unwrap()
                .0;
            let now = self.lag();
            if now < lag {
                since = Instant::now();
            }
            lag = now;
        }
    }
}

/// Bytes as text for failure messages, invalid UTF-8 escaped.
pub fn text(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// A line as the chat delivers it: `(sender, what it said)` for a line
/// `client 7: hello\n` (`("client 7", b"hello\n")`), or `None` for the
/// server's own notices (`client 7 joined`, `client 7 left (...)`).
pub fn said(line: &[u8]) -> Option<(&str, &[u8])> {
    let rest = line.strip_prefix(b"client ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let after = rest[digits..].strip_prefix(b": ")?;
    let name = std::str::from_utf8(&line[..b"client ".len() + digits]).ok()?;
    Some((name, after))
}

/// The length of numbered line `seq`, newline included: 200 to 1,999
/// bytes, about 1,100 on average, and different from one line to the next.
pub fn numbered_len(seq: u32) -> usize {
    200 + (seq as usize * 7919) % 1800
}

/// Numbered line `seq`: `SEQ ` (eight digits and a space), then one letter
/// (`seq` modulo 26) up to [`numbered_len`], then a newline.
pub fn numbered_line(seq: u32) -> Vec<u8> {
    let len = numbered_len(seq);
    let mut line = format!("{seq:08} ").into_bytes();
    line.resize(len - 1, b'a' + (seq % 26) as u8);
    line.push(b'\n');
    line
}

/// Checks a numbered line as delivered (what follows `client N: `):
/// its length, number and letter. Returns its number.
pub fn check_numbered(payload: &[u8]) -> Result<u32, String> {
    let seq: u32 = payload
        .get(..8)
        .and_then(|digits| std::str::from_utf8(digits).ok())
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| {
            format!(
                "not a numbered line: {}",
                text(&payload[..payload.len().min(40)])
            )
        })?;
    let letter = b'a' + (seq % 26) as u8;
    let ok = payload.len() == numbered_len(seq)
        && payload[8] == b' '
        && payload[9] == letter
        && payload[payload.len() - 2] == letter
        && payload[payload.len() - 1] == b'\n';
    if ok {
        Ok(seq)
    } else {
        Err(format!(
            "line {seq} damaged: {} bytes (not {}), {}...{}",
            payload.len(),
            numbered_len(seq),
            text(&payload[..payload.len().min(12)]),
            text(&payload[payload.len().saturating_sub(4)..])
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_lines_check_and_damage_shows() {
        for seq in [0, 1, 25, 26, 99_999] {
            let line = numbered_line(seq);
            assert_eq!(line.len(), numbered_len(seq));
            assert_eq!(check_numbered(&line), Ok(seq));
            assert!(check_numbered(&line[1..]).is_err());
            assert!(check_numbered(&line[..line.len() - 1]).is_err());
        }
    }

    #[test]
    fn said_tells_lines_from_notices() {
        assert_eq!(
            said(b"client 17: hi: there\n"),
            Some(("client 17", &b"hi: there\n"[..]))
        );
        assert_eq!(said(b"client 17 joined\n"), None);
        assert_eq!(said(b"client 17 left (reset)\n"), None);
    }
}
