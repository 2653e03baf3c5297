//! The one response every tutorial server sends.
//!
//! The HOWTO builds it from three byte strings: a status line with a fixed
//! `Date`, two headers, and the body `Hello, world!`. We keep the same bytes
//! so a reader can compare outputs with the Python programs byte for byte.

// ANCHOR: responses
/// The status line and headers, up to and including the blank line.
///
/// Kept apart from the body because examples 05 and 06 write the response in
/// two `send` calls (headers, then body): that is what gives TCP_CORK
/// something to coalesce and Nagle's algorithm something to delay.
pub const HEAD: &[u8] = b"HTTP/1.0 200 OK\r\n\
Date: Mon, 1 Jan 1996 01:01:01 GMT\r\n\
Content-Type: text/plain\r\n\
Content-Length: 13\r\n\
\r\n";

/// The body: 13 bytes, as the `Content-Length` above says.
pub const BODY: &[u8] = b"Hello, world!";

/// The whole response, headers and body, as examples 01 to 04 send it in one
/// call.
pub const RESPONSE: &[u8] = b"HTTP/1.0 200 OK\r\n\
Date: Mon, 1 Jan 1996 01:01:01 GMT\r\n\
Content-Type: text/plain\r\n\
Content-Length: 13\r\n\
\r\n\
Hello, world!";

/// The answer to a request that grew past [`crate::MAX_REQUEST_BYTES`]
/// without ending. 431 is "Request Header Fields Too Large" (RFC 6585); the
/// server closes the connection after sending it.
pub const TOO_LARGE: &[u8] = b"HTTP/1.0 431 Request Header Fields Too Large\r\n\
Content-Type: text/plain\r\n\
Content-Length: 18\r\n\
\r\n\
Request too large\n";
// ANCHOR_END: responses

// ANCHOR: pending
/// A response still being written: which bytes are left.
///
/// A non-blocking `send` may take only part of what it is given (when the
/// socket's send buffer is full), so a server must remember where it stopped
/// and continue on the next EPOLLOUT. The Python examples do that by slicing
/// `responses[fileno]`; here the response is a list of parts (one part, or
/// headers and body) and two indexes, so nothing is copied.
#[derive(Debug, Clone)]
pub struct PendingResponse {
    parts: &'static [&'static [u8]],
    part: usize,
    offset: usize,
}
// ANCHOR_END: pending

impl PendingResponse {
    /// The tutorial's response, written with as few `send` calls as the
    /// kernel allows (usually one).
    pub fn whole() -> Self {
        Self::from_parts(&[RESPONSE])
    }

    /// The same bytes written as two `send` calls: headers, then body.
    pub fn in_two_sends() -> Self {
        Self::from_parts(&[HEAD, BODY])
    }

    /// The 431 answer to an oversized request.
    pub fn too_large() -> Self {
        Self::from_parts(&[TOO_LARGE])
    }

    fn from_parts(parts: &'static [&'static [u8]]) -> Self {
        Self {
            parts,
            part: 0,
            offset: 0,
        }
    }

    /// The bytes to hand to the next `send`: the rest of the current part.
    /// Empty when everything has been sent.
    pub fn unsent(&self) -> &'static [u8] {
        match self.parts.get(self.part) {
            Some(part) => &part[self.offset..],
            None => &[],
        }
    }

    /// Records that `send` accepted `n` bytes of [`unsent`](Self::unsent).
    pub fn advance(&mut self, n: usize) {
        self.offset += n;
        if let Some(part) = self.parts.get(self.part)
            && self.offset >= part.len()
        {
            self.part += 1;
            self.offset = 0;
        }
    }

    /// True once every byte of every part has been handed to the kernel.
    pub fn is_done(&self) -> bool {
        self.part >= self.parts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_is_head_then_body() {
        assert_eq!(RESPONSE, [HEAD, BODY].concat());
    }

    #[test]
    fn content_length_matches_body() {
        let head = std::str::from_utf8(HEAD).unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", BODY.len())));
        let too_large = std::str::from_utf8(TOO_LARGE).unwrap();
        let (_, body) = too_large.split_once("\r\n\r\n").unwrap();
        assert!(too_large.contains(&format!("Content-Length: {}\r\n", body.len())));
    }

    fn drain(mut pending: PendingResponse, chunk: usize) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut sends = 0;
        while !pending.is_done() {
            let unsent = pending.unsent();
            let n = unsent.len().min(chunk);
            out.extend_from_slice(&unsent[..n]);
            pending.advance(n);
            sends += 1;
        }
        (out, sends)
    }

    #[test]
    fn whole_is_one_send_when_the_kernel_takes_everything() {
        assert_eq!(
            drain(PendingResponse::whole(), usize::MAX),
            (RESPONSE.to_vec(), 1)
        );
    }

    #[test]
    fn two_sends_give_the_same_bytes() {
        assert_eq!(
            drain(PendingResponse::in_two_sends(), usize::MAX),
            (RESPONSE.to_vec(), 2)
        );
    }

    #[test]
    fn partial_sends_resume_where_they_stopped() {
        for chunk in 1..=RESPONSE.len() {
            let (bytes, _) = drain(PendingResponse::in_two_sends(), chunk);
            assert_eq!(bytes, RESPONSE, "chunk {chunk}");
        }
    }
}
