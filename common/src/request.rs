//! Collecting a request until its end, with a bound on its size.
//!
//! The servers do not parse HTTP. Like the HOWTO, they read until they see the
//! blank line that ends a request's headers, `\n\n` or `\n\r\n` (the second is
//! the tail of `\r\n\r\n`), then answer. Two things the Python gets wrong are
//! fixed here, once, for every example:
//!
//! - It tests `EOL1 in request` after every read, rescanning the whole buffer:
//!   quadratic work for a request that arrives a byte at a time. We remember
//!   how far we have looked and only look again at the last two old bytes
//!   (where a terminator split across two reads can begin) and the new ones.
//! - It lets `request` grow without limit: a client that never sends the
//!   blank line fills the server's memory. We stop at
//!   [`MAX_REQUEST_BYTES`].

use std::borrow::Cow;

// ANCHOR: request
/// The most a request may hold before its end: 32 KiB.
///
/// nginx allows request headers up to four buffers of 8 KiB
/// (`large_client_header_buffers 4 8k`); we take the same total. Past it the
/// server answers [`crate::response::TOO_LARGE`] and closes. At 32 KiB per
/// connection, 10,000 connections hold at most 320 MiB of request bytes, and
/// only when every one of them is sending headers that large.
pub const MAX_REQUEST_BYTES: usize = 32 * 1024;

/// Where a request stands after the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// No terminator yet: keep reading.
    Incomplete,
    /// A terminator has arrived: answer.
    Complete,
    /// [`MAX_REQUEST_BYTES`] without a terminator: refuse.
    TooLarge,
}

/// The bytes of one request (and any that followed it) as they arrive.
#[derive(Debug, Default, Clone)]
pub struct RequestBuffer {
    bytes: Vec<u8>,
    /// Bytes before this index have been searched and hold no terminator.
    scanned: usize,
    /// Index just past the terminator, once one is found.
    end: Option<usize>,
}
// ANCHOR_END: request

impl RequestBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes just read from the socket and says whether the request
    /// is complete.
    ///
    /// Once the buffer is [`Progress::TooLarge`], further bytes are dropped.
    pub fn push(&mut self, data: &[u8]) -> Progress {
        if self.end.is_none() {
            // Bytes past the cap are never stored: memory stays bounded
            // whatever the client sends.
            let room = (MAX_REQUEST_BYTES + 1).saturating_sub(self.bytes.len());
            self.bytes.extend_from_slice(&data[..data.len().min(room)]);
            self.scan();
        } else {
            // A complete request is being answered; keep what follows it (the
            // next request on a keep-alive connection), within the cap.
            let room = MAX_REQUEST_BYTES.saturating_sub(self.bytes.len());
            self.bytes.extend_from_slice(&data[..data.len().min(room)]);
        }
        self.progress()
    }

    pub fn progress(&self) -> Progress {
        if self.end.is_some() {
            Progress::Complete
        } else if self.bytes.len() > MAX_REQUEST_BYTES {
            Progress::TooLarge
        } else {
            Progress::Incomplete
        }
    }

    pub fn is_complete(&self) -> bool {
        self.end.is_some()
    }

    /// How many bytes the buffer holds.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The request without its terminator (everything so far when it is not
    /// complete), as the server prints it.
    pub fn head(&self) -> &[u8] {
        match self.end {
            Some(end) => {
                let head = &self.bytes[..end];
                head.strip_suffix(b"\n\r\n")
                    .or_else(|| head.strip_suffix(b"\n\n"))
                    .unwrap_or(head)
            }
            None => &self.bytes,
        }
    }

    /// The request as text. Bytes that are not UTF-8 become U+FFFD instead of
    /// raising an error, as Python's `request.decode()` does.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.head())
    }

    /// Forgets the request that was just answered and keeps the bytes that
    /// followed it, for servers that answer several requests on one
    /// connection. The kept bytes may already hold the next request.
    pub fn finish_request(&mut self) -> Progress {
        let end = self.end.take().unwrap_or(self.bytes.len());
        self.bytes.drain(..end);
        self.scanned = 0;
        self.scan();
        self.progress()
    }

    /// Looks for the terminator in the bytes not yet searched.
    fn scan(&mut self) {
        // A terminator is at most 3 bytes long and starts with `\n`, so one
        // that ends in the new bytes starts at most 2 bytes before them.
        let mut from = self.scanned.saturating_sub(2);
        while let Some(offset) = self.bytes[from..].iter().position(|&b| b == b'\n') {
            let newline = from + offset;
            match self.bytes.get(newline + 1..) {
                Some([b'\n', ..]) => return self.found(newline + 2),
                Some([b'\r', b'\n', ..]) => return self.found(newline + 3),
                _ => from = newline + 1,
            }
        }
        self.scanned = self.bytes.len();
    }

    fn found(&mut self, end: usize) {
        self.end = Some(end);
        self.scanned = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_all(chunks: &[&[u8]]) -> (RequestBuffer, Progress) {
        let mut request = RequestBuffer::new();
        let mut progress = Progress::Incomplete;
        for chunk in chunks {
            progress = request.push(chunk);
        }
        (request, progress)
    }

    #[test]
    fn both_terminators_end_a_request() {
        for (input, head) in [
            (&b"GET / HTTP/1.0\r\n\r\n"[..], &b"GET / HTTP/1.0\r"[..]),
            (b"GET / HTTP/1.0\n\n", b"GET / HTTP/1.0"),
        ] {
            let (request, progress) = push_all(&[input]);
            assert_eq!(progress, Progress::Complete);
            assert_eq!(request.head(), head);
        }
    }

    #[test]
    fn a_single_line_break_is_not_an_end() {
        let (_, progress) = push_all(&[b"GET / HTTP/1.0\r\nHost: x\r\n"]);
        assert_eq!(progress, Progress::Incomplete);
        let (_, progress) = push_all(&[b"\r\n\r"]);
        assert_eq!(progress, Progress::Incomplete);
    }

    #[test]
    fn a_terminator_split_at_every_position_is_found() {
        for input in [&b"GET / HTTP/1.0\r\nA: b\r\n\r\n"[..], b"GET /\nA: b\n\n"] {
            for a in 0..=input.len() {
                for b in a..=input.len() {
                    let (request, progress) = push_all(&[&input[..a], &input[a..b], &input[b..]]);
                    assert_eq!(progress, Progress::Complete, "split at {a}, {b}");
                    assert_eq!(request.len(), input.len());
                }
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let input = b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n";
        let mut request = RequestBuffer::new();
        for (i, byte) in input.iter().enumerate() {
            let progress = request.push(std::slice::from_ref(byte));
            let expected = if i + 1 == input.len() {
                Progress::Complete
            } else {
                Progress::Incomplete
            };
            assert_eq!(progress, expected, "after byte {i}");
        }
    }

    #[test]
    fn the_cap_bounds_memory_and_reports_too_large() {
        let mut request = RequestBuffer::new();
        let chunk = [b'a'; 1024];
        let mut progress = Progress::Incomplete;
        for _ in 0..1024 {
            progress = request.push(&chunk);
        }
        assert_eq!(progress, Progress::TooLarge);
        assert_eq!(request.len(), MAX_REQUEST_BYTES + 1);
    }

    #[test]
    fn a_request_of_exactly_the_cap_is_accepted() {
        let mut input = vec![b'a'; MAX_REQUEST_BYTES - 2];
        input.extend_from_slice(b"\n\n");
        let (_, progress) = push_all(&[&input]);
        assert_eq!(progress, Progress::Complete);
    }

    #[test]
    fn non_utf8_bytes_are_shown_lossily() {
        let (request, _) = push_all(&[b"GET /\xff\xfe HTTP/1.0\n\n"]);
        assert_eq!(request.text(), "GET /\u{fffd}\u{fffd} HTTP/1.0");
    }

    #[test]
    fn finish_request_keeps_a_pipelined_request() {
        let (mut request, progress) = push_all(&[b"GET /a\n\nGET /b\r\n\r\nGET /c"]);
        assert_eq!(progress, Progress::Complete);
        assert_eq!(request.head(), b"GET /a");
        assert_eq!(request.finish_request(), Progress::Complete);
        assert_eq!(request.head(), b"GET /b\r");
        assert_eq!(request.finish_request(), Progress::Incomplete);
        assert_eq!(request.push(b"\n\n"), Progress::Complete);
        assert_eq!(request.head(), b"GET /c");
    }
}

/// Property tests: any bytes, cut into any pieces, give the same answer as
/// a plain search of the whole input. proptest runs 256 random cases per
/// property (a fraction of a second), so CI runs them with every test run.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Where a plain, non-incremental search finds the end of the request.
    fn reference_end(bytes: &[u8]) -> Option<usize> {
        (0..bytes.len()).find_map(|i| match &bytes[i..] {
            [b'\n', b'\n', ..] => Some(i + 2),
            [b'\n', b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        })
    }

    /// Bytes rich in line breaks, so that terminators and near misses
    /// (`\n\r`, `\r\n\r`) are common.
    fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(&b"\r\n\r\nab\x00\xff"[..]), 0..64)
    }

    proptest! {
        #[test]
        fn pieces_do_not_change_the_answer(
            bytes in request_bytes(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            cuts.push(0);
            cuts.push(bytes.len());
            cuts.sort();
            let mut request = RequestBuffer::new();
            let mut progress = Progress::Incomplete;
            for piece in cuts.windows(2) {
                progress = request.push(&bytes[piece[0]..piece[1]]);
            }
            match reference_end(&bytes) {
                Some(end) => {
                    prop_assert_eq!(progress, Progress::Complete);
                    prop_assert_eq!(request.head(), &bytes[..end - if bytes[end - 2] == b'\r' { 3 } else { 2 }]);
                }
                None => prop_assert_eq!(progress, Progress::Incomplete),
            }
        }

        #[test]
        fn the_next_request_is_found_after_the_first(
            first in request_bytes(),
            second in request_bytes(),
        ) {
            let mut bytes = first.clone();
            bytes.extend_from_slice(b"\n\n");
            let first_end = reference_end(&bytes).unwrap();
            bytes.extend_from_slice(&second);
            let mut request = RequestBuffer::new();
            prop_assert_eq!(request.push(&bytes), Progress::Complete);
            let expected = match reference_end(&bytes[first_end..]) {
                Some(_) => Progress::Complete,
                None => Progress::Incomplete,
            };
            prop_assert_eq!(request.finish_request(), expected);
        }
    }
}
