//! A plain HTTP/1.1 client for the tests that read what the coordinator serves beside the
//! JSON API (`/metrics`, the dashboard), with either of its tokens.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::Coordinator;

/// A reply: status code and body.
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body, as text.
    pub body: String,
    /// Body, as bytes (de-chunked when sent chunked).
    pub raw: Vec<u8>,
}

/// Sends `method path` with `token` as bearer (none when `None`) and reads the whole reply.
pub fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Result<Reply> {
    request_with(addr, method, path, token, None)
}

/// Like [`request`], with a JSON `body`.
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<Reply> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let body = body.unwrap_or("");
    let written = write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // A server refusing a large body may answer and close before it is all sent: its answer
    // is what counts, and the write error only when there is none.
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    if raw.is_empty() {
        written?;
        read?;
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = &raw[split + 4..];
    let raw = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&raw).into_owned(),
        raw,
    })
}

/// The body of a chunked reply, its chunks joined (binary: a bundle is sent chunked too).
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line])?.trim(), 16)?;
        let rest = &body[line + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            bail!("short chunk");
        }
        out.extend_from_slice(&rest[..size]);
        body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
    }
}

impl Coordinator {
    /// A token from the data directory (`admin` or `viewer`).
    pub fn token(&self, which: &str) -> Result<String> {
        let path = self.data_dir.join(format!("{which}.token"));
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("read {}", path.display()))?
            .trim()
            .to_owned())
    }

    /// `GET path` on the admin port with the `which` token.
    pub fn get(&self, path: &str, which: &str) -> Result<Reply> {
        request(self.http, "GET", path, Some(&self.token(which)?))
    }
}
