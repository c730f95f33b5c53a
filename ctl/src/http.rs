//! Just enough HTTP/1.1 for the daemon's two HTTP sockets, Docker's plugin socket and the metrics
//! endpoint: requests with a `Content-Length` body or none (dockerd's plugin client always sends
//! one; a scraper's GET has none), one after another on a kept-alive connection, and replies with
//! a body of a given type. Headers are parsed by `httparse`; a request is bounded (headers
//! [`MAX_HEAD`], body [`MAX_BODY`]) and a malformed one ends its connection with 400.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest request head (request line and headers) taken.
pub const MAX_HEAD: usize = 16 << 10;
/// The largest request body taken (a CreateNetwork with many options is a few KiB).
pub const MAX_BODY: usize = 1 << 20;

/// One request: its method, path and body.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    /// The client asked to close the connection after the reply.
    pub close: bool,
}

/// Why a request could not be read: what the 400 reply says.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// Reads the next request; None at a clean end of the connection (between requests).
pub async fn read_request<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Option<Request>, BadRequest> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = (&mut *r)
            .take((MAX_HEAD + 1 - head.len()) as u64)
            .read_until(b'\n', &mut head)
            .await
            .map_err(|e| BadRequest(format!("reading the request: {e}")))?;
        if n == 0 {
            return if head.is_empty() { Ok(None) } else { Err(BadRequest("the request ended in its headers".into())) };
        }
        if head.len() > MAX_HEAD {
            return Err(BadRequest(format!("request headers longer than {MAX_HEAD} bytes")));
        }
        // Blank lines before a request are allowed (RFC 9112 §2.2); an empty line after headers
        // ends them.
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                head.clear();
                continue;
            }
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(BadRequest("incomplete request head".into())),
        Err(e) => return Err(BadRequest(format!("malformed request: {e}"))),
    }
    let (method, path) = (req.method.unwrap_or_default().to_string(), req.path.unwrap_or_default().to_string());
    let mut length = 0usize;
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or_default().trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| BadRequest(format!("Content-Length '{value}' is not a number")))?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(BadRequest(format!("Transfer-Encoding '{value}' is not supported: send a Content-Length")));
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    if length > MAX_BODY {
        return Err(BadRequest(format!("request body of {length} bytes is larger than {MAX_BODY}")));
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).await.map_err(|e| BadRequest(format!("reading the {length}-byte body: {e}")))?;
    Ok(Some(Request { method, path, body, close }))
}

/// Writes a reply with a body of `content_type`.
pub async fn write_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let head =
        format!("HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len());
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    w.write_all(&out).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8]) -> Vec<Result<Option<Request>, BadRequest>> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut r = tokio::io::BufReader::new(input);
            let mut out = Vec::new();
            loop {
                let x = read_request(&mut r).await;
                let end = !matches!(x, Ok(Some(_)));
                out.push(x);
                if end {
                    return out;
                }
            }
        })
    }

    #[test]
    fn requests_on_a_kept_alive_connection() {
        let input = b"POST /Plugin.Activate HTTP/1.1\r\nHost: plugin\r\nContent-Length: 0\r\n\r\n\
                      POST /NetworkDriver.Join HTTP/1.1\r\ncontent-length: 7\r\nConnection: close\r\n\r\n{\"a\":1}";
        let got = read(input);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            Ok(Some(Request { method: "POST".into(), path: "/Plugin.Activate".into(), body: vec![], close: false }))
        );
        assert_eq!(
            got[1],
            Ok(Some(Request {
                method: "POST".into(),
                path: "/NetworkDriver.Join".into(),
                body: b"{\"a\":1}".to_vec(),
                close: true
            }))
        );
        assert_eq!(got[2], Ok(None), "a clean end between requests");
    }

    #[test]
    fn bad_requests_are_named() {
        let e = |input: &[u8]| read(input).pop().unwrap().unwrap_err().0;
        assert_eq!(e(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), "Content-Length 'x' is not a number");
        assert!(e(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").contains("send a Content-Length"));
        assert!(e(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").contains("larger than"));
        assert!(e(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort").contains("10-byte body"));
        assert_eq!(e(b"POST / HTTP/1.1\r\nHost"), "the request ended in its headers");
        let long = format!("POST / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(e(long.as_bytes()).contains("longer than"));
        assert!(e(b"NOT HTTP\r\n\r\n").starts_with("malformed request"));
    }

    #[test]
    fn a_reply() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut out = Vec::new();
        rt.block_on(write_reply(&mut out, 404, "application/vnd.docker.plugins.v1+json", b"{}")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/vnd.docker.plugins.v1+json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }
}
