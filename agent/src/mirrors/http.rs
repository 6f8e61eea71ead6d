//! One chunk frame from one untrusted address, within bounds: at most `limit` bytes (a
//! larger announced length is refused before reading, and a body that runs on is cut off at
//! the bound) and at most the configured time for the whole request (a server that trickles
//! its answer is given up on).

use std::time::Duration;

/// Why a mirror did not deliver a frame.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The mirror does not hold the chunk (yet): nothing wrong with the mirror itself.
    #[error("does not hold it (HTTP {0})")]
    Missing(u16),
    /// Any other answer than 200.
    #[error("answered HTTP {0}")]
    Status(u16),
    /// More bytes than any frame of the chunk can take.
    #[error("sent more than the {limit}-byte bound{}", announced.map(|n| format!(" (announced {n})")).unwrap_or_default())]
    Oversized {
        /// The bound.
        limit: usize,
        /// What the answer's length header said, when it said.
        announced: Option<u64>,
    },
    /// Bytes that are not the chunk (found by the caller, which checks them).
    #[error("sent bytes that are not the signed chunk: {0}")]
    Wrong(String),
    /// The request could not be made or did not finish in time.
    #[error("{0}")]
    Transport(String),
}

impl MirrorError {
    /// Whether the mirror is not to be asked again during this download: anything but a
    /// plain miss.
    pub fn drops_source(&self) -> bool {
        !matches!(self, MirrorError::Missing(_))
    }
}

/// An HTTP client for mirrors: every request (connecting included) ends within `timeout`;
/// answers are taken as they are (no decompression), following a few redirects.
pub fn client(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_redirects(4)
        .user_agent(concat!("ferry-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The body at `url`, at most `limit` bytes.
pub fn get(http: &ureq::Agent, url: &str, limit: usize) -> Result<Vec<u8>, MirrorError> {
    let mut answer = http
        .get(url)
        .call()
        .map_err(|e| MirrorError::Transport(e.to_string()))?;
    match answer.status().as_u16() {
        200 => {}
        status @ (404 | 410) => return Err(MirrorError::Missing(status)),
        status => return Err(MirrorError::Status(status)),
    }
    let announced = answer
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let oversized = |announced| MirrorError::Oversized { limit, announced };
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(oversized(announced));
    }
    answer
        .body_mut()
        .with_config()
        .limit(limit as u64)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => oversized(announced),
            e => MirrorError::Transport(e.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    use super::*;

    /// A server that answers each connection with `answer` (after reading the request).
    fn serve(answer: impl Fn(&mut std::net::TcpStream) + Send + 'static) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                answer(&mut stream);
            }
        });
        format!("http://{addr}/ab/frame.zst")
    }

    #[test]
    fn a_frame_within_the_bound_is_read() {
        let url = serve(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        });
        let http = client(Duration::from_secs(5));
        assert_eq!(get(&http, &url, 100).unwrap(), b"hello");
    }

    #[test]
    fn a_miss_is_not_held_against_the_mirror_but_other_answers_are() {
        let url = serve(|s| {
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        });
        let http = client(Duration::from_secs(5));
        let e = get(&http, &url, 100).unwrap_err();
        assert!(
            matches!(e, MirrorError::Missing(404)) && !e.drops_source(),
            "{e}"
        );
        let url = serve(|s| {
            let _ = s.write_all(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
        });
        let e = get(&http, &url, 100).unwrap_err();
        assert!(
            matches!(e, MirrorError::Status(500)) && e.drops_source(),
            "{e}"
        );
    }

    #[test]
    fn an_announced_length_over_the_bound_is_refused_before_reading() {
        let url = serve(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\nxx");
        });
        let http = client(Duration::from_secs(5));
        let e = get(&http, &url, 1000).unwrap_err();
        assert!(
            matches!(
                e,
                MirrorError::Oversized {
                    announced: Some(1_000_000_000),
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn endless_bytes_are_cut_off_at_the_bound() {
        let url = serve(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let block = [7u8; 64 * 1024];
            while s.write_all(&block).is_ok() {}
        });
        let http = client(Duration::from_secs(20));
        let e = get(&http, &url, 256 * 1024).unwrap_err();
        assert!(
            matches!(
                e,
                MirrorError::Oversized {
                    announced: None,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_slow_loris_is_given_up_on_at_the_timeout() {
        let url = serve(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
            for _ in 0..1000 {
                if s.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let http = client(Duration::from_millis(700));
        let started = Instant::now();
        let e = get(&http, &url, 10_000).unwrap_err();
        assert!(
            matches!(e, MirrorError::Transport(_)) && e.drops_source(),
            "{e}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_mirror_that_is_not_there_fails_fast() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let http = client(Duration::from_secs(5));
        let e = get(&http, &format!("http://{addr}/x"), 10).unwrap_err();
        assert!(matches!(e, MirrorError::Transport(_)), "{e}");
    }
}
