//! The URL echo: e3's server answers each request with its own path.
//!
//! `GET /hello HTTP/1.1` is answered `hello`; `GET /` with a hint. The
//! article shows it in a browser, and that is where the care goes: a page
//! whose text is chosen by whoever writes the URL is a classic way to get
//! HTML or script into a victim's browser (reflected XSS).
//!
//! Decisions, each one pinned by a test:
//!
//! - The body is `text/plain; charset=utf-8` with
//!   `X-Content-Type-Options: nosniff`. Without nosniff, some browsers
//!   "sniff" a text/plain body that looks like HTML and render it as HTML;
//!   with it, `/<script>...` is shown as the characters it is.
//! - Percent-escapes are decoded (`/hello%20world` shows `hello world`,
//!   `/caf%C3%A9` shows `café`), because a browser encodes what the user
//!   typed and the echo should show it back. e3 shows the escapes as they
//!   are. A `%` not followed by two hex digits stays as it is. The query
//!   string is part of the echo, as in e3 (`/a?b=c` shows `a?b=c`).
//! - Bytes that are not UTF-8 (raw in the request, or decoded from `%FF`)
//!   become U+FFFD: the body is always valid UTF-8. e3's `decode()` raises
//!   an exception and kills the whole loop.
//! - `Content-Length` counts bytes. e3 counts characters (`len(url)` of a
//!   `str`), which is short for anything non-ASCII: the browser cuts the
//!   text off.
//! - A request target longer than [`MAX_TARGET_BYTES`] is answered
//!   `414 URI Too Long`; a request line that is not `METHOD /path VERSION`
//!   is answered `400 Bad Request`. e3 raises IndexError.

use std::borrow::Cow;

/// The longest request target (the path and query, as sent) echoed: 2 KiB.
/// Longer ones get 414. Browsers send much longer URLs, but nobody needs
/// a 2 KiB echo, and the cap bounds what one request can make us send.
pub const MAX_TARGET_BYTES: usize = 2048;

/// What the echo says for `/`: e3's hint, reworded.
pub const HINT: &str = "Hello! Add something to the URL to see it echoed: /hello shows hello.";

/// The date every tutorial response carries (a fixed one, as in the HOWTO).
const DATE: &str = "Mon, 1 Jan 1996 01:01:01 GMT";

// ANCHOR: respond
/// The complete response to a request whose head (request line and
/// headers, without the blank line) is `head`.
pub fn respond(head: &[u8]) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ').filter(|part| !part.is_empty());
    let (Some(_method), Some(target), Some(_version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return response(
            "400 Bad Request",
            "Bad request: expected METHOD /path VERSION\n",
        );
    };
    let Some(path) = target.strip_prefix(b"/") else {
        return response(
            "400 Bad Request",
            "Bad request: the path must start with /\n",
        );
    };
    if target.len() > MAX_TARGET_BYTES {
        let body = format!("URI too long: at most {MAX_TARGET_BYTES} bytes are echoed\n");
        return response("414 URI Too Long", &body);
    }
    if path.is_empty() {
        return response("200 OK", HINT);
    }
    let decoded = percent_decode(path);
    response("200 OK", &String::from_utf8_lossy(&decoded))
}
// ANCHOR_END: respond

// ANCHOR: response
/// An HTTP/1.0 response with a plain-text body. `Content-Length` is the
/// body's length in bytes; the connection closes after it.
fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.0 {status}\r\n\
         Date: {DATE}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Content-Length: {}\r\n\
         \r\n\
         {body}",
        body.len()
    )
    .into_bytes()
}
// ANCHOR_END: response

/// Replaces each `%XX` (two hex digits) by the byte it stands for.
pub fn percent_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'%') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let escaped = match input.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(input[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body of the response to `GET {target} HTTP/1.0`, after checking
    /// its Content-Length.
    fn echo(target: &[u8]) -> (String, String) {
        let mut head = b"GET ".to_vec();
        head.extend_from_slice(target);
        head.extend_from_slice(b" HTTP/1.0\r\nHost: x\r");
        split(&respond(&head))
    }

    fn split(response: &[u8]) -> (String, String) {
        let text = String::from_utf8(response.to_vec()).expect("responses are UTF-8");
        let (headers, body) = text.split_once("\r\n\r\n").unwrap();
        let headers = format!("{headers}\r\n");
        let length = format!("Content-Length: {}\r\n", body.len());
        assert!(headers.contains(&length), "{headers:?} for {body:?}");
        assert!(headers.contains("X-Content-Type-Options: nosniff\r\n"));
        let status = headers.lines().next().unwrap().to_owned();
        (status, body.to_owned())
    }

    #[test]
    fn the_path_comes_back_without_its_slash() {
        assert_eq!(echo(b"/hello"), ("HTTP/1.0 200 OK".into(), "hello".into()));
        assert_eq!(echo(b"/a/b?c=d").1, "a/b?c=d");
    }

    #[test]
    fn an_empty_path_gets_the_hint() {
        assert_eq!(echo(b"/").1, HINT);
    }

    #[test]
    fn escapes_are_decoded_and_bad_ones_kept() {
        assert_eq!(echo(b"/hello%20world").1, "hello world");
        assert_eq!(echo(b"/caf%C3%A9").1, "café");
        assert_eq!(echo(b"/100%").1, "100%");
        assert_eq!(echo(b"/%zz%4").1, "%zz%4");
        assert_eq!(echo(b"/%3Cb%3E").1, "<b>");
    }

    #[test]
    fn non_utf8_becomes_replacement_characters() {
        assert_eq!(echo(b"/a%FFb").1, "a\u{fffd}b");
        assert_eq!(echo(b"/a\xffb").1, "a\u{fffd}b");
        // Raw UTF-8 (curl sends it as typed) is counted in bytes.
        assert_eq!(echo("/żółw".as_bytes()).1, "żółw");
    }

    #[test]
    fn long_targets_are_refused() {
        let mut target = b"/".to_vec();
        target.resize(MAX_TARGET_BYTES, b'a');
        assert_eq!(echo(&target).0, "HTTP/1.0 200 OK");
        target.push(b'a');
        assert_eq!(echo(&target).0, "HTTP/1.0 414 URI Too Long");
    }

    #[test]
    fn malformed_request_lines_are_refused() {
        for head in [
            &b""[..],
            b"GET",
            b"GET /",
            b"GET hello HTTP/1.0",
            b"GET / HTTP/1.0 x",
        ] {
            let (status, _) = split(&respond(head));
            assert_eq!(status, "HTTP/1.0 400 Bad Request", "{head:?}");
        }
    }
}
