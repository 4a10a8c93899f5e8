//! A minimal HTTP/1.1 keep-alive client: one request at a time on one stream.
//!
//! Just enough of RFC 9112 for an admission webhook's answers: a status line,
//! headers, and a body framed by `Content-Length` or chunked encoding. The read
//! buffer is reused across requests so that a request costs no allocation.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Why a request/response exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The peer closed (or reset) the connection before a single byte of the
    /// response: on a reused keep-alive connection this is the usual race with
    /// a server that closes idle connections; the request was not processed.
    #[error("connection closed before any response byte: {0}")]
    ClosedBeforeResponse(String),
    /// The connection ended in the middle of a response.
    #[error("response truncated: {0}")]
    Truncated(String),
    /// The response is not valid HTTP/1.1.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// Writing the request failed.
    #[error("write failed: {0}")]
    Write(std::io::Error),
}

/// Status line and framing of a response whose body was read into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// HTTP status code.
    pub status: u16,
    /// The server asked to close the connection (or spoke HTTP/1.0).
    pub close: bool,
}

/// One HTTP/1.1 connection.
pub struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
    pos: usize,
    /// Requests completed on this connection.
    pub requests: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Wraps an established stream (e.g. a TLS stream).
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            pos: 0,
            requests: 0,
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Sends `request` (complete head and body) and reads the response body into `body`.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        body: &mut Vec<u8>,
    ) -> Result<ResponseHead, HttpError> {
        self.stream
            .write_all(request)
            .await
            .map_err(HttpError::Write)?;
        self.stream.flush().await.map_err(HttpError::Write)?;
        let head = self.read_response(body).await?;
        self.requests += 1;
        Ok(head)
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    async fn fill_or(&mut self, what: &str) -> Result<(), HttpError> {
        match self.fill().await {
            Ok(0) => Err(HttpError::Truncated(format!("end of stream in {what}"))),
            Ok(_) => Ok(()),
            Err(e) => Err(HttpError::Truncated(format!("{e} in {what}"))),
        }
    }

    /// Reads one line (without CRLF) starting at `pos`, returning its bounds.
    async fn line(&mut self, what: &str) -> Result<(usize, usize), HttpError> {
        loop {
            if let Some(i) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                let start = self.pos;
                let mut end = start + i;
                self.pos = end + 1;
                if end > start && self.buf[end - 1] == b'\r' {
                    end -= 1;
                }
                return Ok((start, end));
            }
            if self.buf.len() - self.pos > MAX_HEAD {
                return Err(HttpError::Malformed(format!("{what} line too long")));
            }
            self.fill_or(what).await?;
        }
    }

    async fn read_response(&mut self, body: &mut Vec<u8>) -> Result<ResponseHead, HttpError> {
        body.clear();
        // Wait for the first byte separately: EOF or reset here means the server
        // never started answering this request.
        if self.pos == self.buf.len() {
            match self.fill().await {
                Ok(0) => {
                    return Err(HttpError::ClosedBeforeResponse("end of stream".into()));
                }
                Ok(_) => {}
                Err(e) => return Err(HttpError::ClosedBeforeResponse(e.to_string())),
            }
        }
        let head_start = self.pos;
        let (s, e) = self.line("status").await?;
        let (status, mut close) = parse_status_line(&self.buf[s..e])?;
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        loop {
            let (s, e) = self.line("header").await?;
            if self.pos - head_start > MAX_HEAD {
                return Err(HttpError::Malformed("response head too large".into()));
            }
            if s == e {
                break;
            }
            let line = &self.buf[s..e];
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(HttpError::Malformed("header without colon".into()));
            };
            let name = &line[..colon];
            let value = trim(&line[colon + 1..]);
            if name.eq_ignore_ascii_case(b"content-length") {
                let n = parse_usize(value)
                    .ok_or_else(|| HttpError::Malformed("bad content-length".into()))?;
                content_length = Some(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = contains_token(value, b"chunked");
            } else if name.eq_ignore_ascii_case(b"connection") {
                if contains_token(value, b"close") {
                    close = true;
                } else if contains_token(value, b"keep-alive") {
                    close = false;
                }
            }
        }
        if chunked {
            self.read_chunked(body).await?;
        } else if let Some(n) = content_length {
            if n > MAX_BODY {
                return Err(HttpError::Malformed(format!("body of {n} bytes too large")));
            }
            self.read_exact_into(n, body).await?;
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
            // No body.
        } else {
            // Body delimited by the end of the connection.
            loop {
                body.extend_from_slice(&self.buf[self.pos..]);
                self.pos = self.buf.len();
                if body.len() > MAX_BODY {
                    return Err(HttpError::Malformed("body too large".into()));
                }
                match self.fill().await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(HttpError::Truncated(e.to_string())),
                }
            }
            close = true;
        }
        Ok(ResponseHead { status, close })
    }

    async fn read_exact_into(&mut self, n: usize, body: &mut Vec<u8>) -> Result<(), HttpError> {
        let target = body.len() + n;
        while body.len() < target {
            if self.pos == self.buf.len() {
                self.fill_or("body").await?;
            }
            let take = (target - body.len()).min(self.buf.len() - self.pos);
            body.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
        }
        Ok(())
    }

    async fn read_chunked(&mut self, body: &mut Vec<u8>) -> Result<(), HttpError> {
        loop {
            let (s, e) = self.line("chunk size").await?;
            let line = &self.buf[s..e];
            let hex_end = line
                .iter()
                .position(|&b| b == b';' || b == b' ')
                .unwrap_or(line.len());
            let size = parse_hex(&line[..hex_end])
                .ok_or_else(|| HttpError::Malformed("bad chunk size".into()))?;
            if size == 0 {
                // Trailers until the empty line.
                loop {
                    let (s, e) = self.line("trailer").await?;
                    if s == e {
                        return Ok(());
                    }
                }
            }
            if body.len() + size > MAX_BODY {
                return Err(HttpError::Malformed("chunked body too large".into()));
            }
            self.read_exact_into(size, body).await?;
            let (s, e) = self.line("chunk end").await?;
            if s != e {
                return Err(HttpError::Malformed("chunk not followed by CRLF".into()));
            }
        }
    }
}

fn parse_status_line(line: &[u8]) -> Result<(u16, bool), HttpError> {
    let bad = || {
        HttpError::Malformed(format!(
            "bad status line {:?}",
            String::from_utf8_lossy(line)
        ))
    };
    let close = if line.starts_with(b"HTTP/1.1 ") {
        false
    } else if line.starts_with(b"HTTP/1.0 ") {
        true
    } else {
        return Err(bad());
    };
    let code = line.get(9..12).ok_or_else(bad)?;
    let status = parse_usize(code)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(bad)?;
    Ok((status, close))
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

fn parse_usize(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 18 {
        return None;
    }
    v.iter().try_fold(0usize, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + usize::from(b - b'0'))
    })
}

fn parse_hex(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 15 {
        return None;
    }
    v.iter().try_fold(0usize, |acc, &b| {
        let d = (b as char).to_digit(16)?;
        Some(acc * 16 + d as usize)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn roundtrip(response: &'static [u8]) -> (Result<ResponseHead, HttpError>, Vec<u8>) {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(async move {
            let mut req = vec![0u8; 5];
            server.read_exact(&mut req).await.unwrap();
            // Dribble the response byte by byte to exercise buffering.
            for b in response {
                server.write_all(&[*b]).await.unwrap();
            }
            drop(server);
        });
        let mut conn = Conn::new(client);
        let mut body = Vec::new();
        let r = conn.exchange(b"hello", &mut body).await;
        srv.await.unwrap();
        (r, body)
    }

    #[tokio::test]
    async fn content_length() {
        let (r, body) = roundtrip(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4\r\n\r\n{\"a\"",
        )
        .await;
        assert_eq!(
            r.unwrap(),
            ResponseHead {
                status: 200,
                close: false
            }
        );
        assert_eq!(body, b"{\"a\"");
    }

    #[tokio::test]
    async fn chunked_and_close() {
        let (r, body) = roundtrip(
            b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(
            r.unwrap(),
            ResponseHead {
                status: 500,
                close: true
            }
        );
        assert_eq!(body, b"abcde");
    }

    #[tokio::test]
    async fn eof_cases() {
        let (r, _) = roundtrip(b"").await;
        assert!(
            matches!(r, Err(HttpError::ClosedBeforeResponse(_))),
            "{r:?}"
        );
        let (r, _) = roundtrip(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc").await;
        assert!(matches!(r, Err(HttpError::Truncated(_))), "{r:?}");
        let (r, _) = roundtrip(b"SSH-2.0-x\r\n\r\n").await;
        assert!(matches!(r, Err(HttpError::Malformed(_))), "{r:?}");
    }

    #[tokio::test]
    async fn keep_alive_two_responses_in_one_read() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(async move {
            let mut req = vec![0u8; 2];
            server.read_exact(&mut req).await.unwrap();
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 201 OK\r\nContent-Length: 2\r\n\r\nBC")
                .await
                .unwrap();
            let mut req = vec![0u8; 2];
            server.read_exact(&mut req).await.unwrap();
        });
        let mut conn = Conn::new(client);
        let mut body = Vec::new();
        assert_eq!(conn.exchange(b"r1", &mut body).await.unwrap().status, 200);
        assert_eq!(body, b"A");
        assert_eq!(conn.exchange(b"r2", &mut body).await.unwrap().status, 201);
        assert_eq!(body, b"BC");
        assert_eq!(conn.requests, 2);
        srv.await.unwrap();
    }
}
