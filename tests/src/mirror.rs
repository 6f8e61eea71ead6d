//! Mirrors for the tests: a real static web server (Python's `http.server`) over a copy of a
//! chunk directory, as a LAN cache would be, and a hostile one that lies, runs on or stalls.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// `python3 -m http.server` serving `root` on a loopback port (stopped when dropped).
pub struct StaticMirror {
    child: Child,
    addr: SocketAddr,
}

impl StaticMirror {
    /// Starts the server over `root`.
    pub fn start(root: &Path) -> Result<Self> {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "0",
                "--directory",
            ])
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting python3 -m http.server")?;
        let stdout = child.stdout.take().context("the server's output")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the server's first line")?;
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port: u16 = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("no port in the server's first line: {line:?}"))?;
        Ok(Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    /// Its base address.
    pub fn base(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for StaticMirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a [`HostileMirror`] answers.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// The real frame for the first `n` requests, then the real frame with bytes changed.
    LiesAfter(usize),
    /// A 200 without a length, then bytes until the client hangs up.
    Endless,
    /// A 200 with the real length, then one byte a second.
    SlowLoris,
}

/// A mirror over a chunk directory that misbehaves as told (stopped when dropped).
pub struct HostileMirror {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HostileMirror {
    /// Starts it over the frames in `root`.
    pub fn start(root: &Path, behaviour: Behaviour) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, stopping, root) = (requests.clone(), stop.clone(), root.to_owned());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let n = counted.fetch_add(1, Ordering::SeqCst);
                let (root, stopping) = (root.clone(), stopping.clone());
                std::thread::spawn(move || answer(stream, &root, behaviour, n, &stopping));
            }
        });
        Ok(Self {
            addr,
            requests,
            stop,
        })
    }

    /// Its base address.
    pub fn base(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Requests it has had.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HostileMirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// The path asked for in a request (one per connection: every answer closes it).
fn requested(stream: &mut TcpStream) -> Option<PathBuf> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head).lines().next()?.to_owned();
    let path = line.split_whitespace().nth(1)?.trim_start_matches('/');
    if path.contains("..") {
        return None;
    }
    Some(PathBuf::from(path))
}

fn answer(mut stream: TcpStream, root: &Path, behaviour: Behaviour, n: usize, stop: &AtomicBool) {
    let Some(path) = requested(&mut stream) else {
        return;
    };
    let Ok(mut frame) = std::fs::read(root.join(path)) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    match behaviour {
        Behaviour::LiesAfter(honest) => {
            if n >= honest {
                let middle = frame.len() / 2;
                for b in &mut frame[middle..] {
                    *b ^= 0x5a;
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                frame.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&frame);
        }
        Behaviour::Endless => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let block = vec![0x28u8; 64 * 1024];
            while !stop.load(Ordering::SeqCst) && stream.write_all(&block).is_ok() {}
        }
        Behaviour::SlowLoris => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                frame.len()
            );
            let _ = stream.write_all(head.as_bytes());
            for b in frame {
                if stop.load(Ordering::SeqCst) || stream.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Copies the frames of a chunk directory (`ab/ab….zst`, nothing else) into `to`, as a LAN
/// cache filled from it would hold them; returns how many.
pub fn copy_frames(from: &Path, to: &Path) -> Result<usize> {
    let mut copied = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.len() != 2 || !entry.file_type()?.is_dir() {
            continue;
        }
        std::fs::create_dir_all(to.join(&*name))?;
        for frame in std::fs::read_dir(entry.path())? {
            let frame = frame?;
            if frame.file_name().to_string_lossy().ends_with(".zst") {
                std::fs::copy(frame.path(), to.join(&*name).join(frame.file_name()))?;
                copied += 1;
            }
        }
    }
    if copied == 0 {
        bail!("no frames under {}", from.display());
    }
    Ok(copied)
}
