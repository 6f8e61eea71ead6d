//! A UDP relay between agents and a coordinator, for faults the kernel here cannot inject (no
//! netem): it forwards datagrams both ways until told to cut the path, and can hold the
//! coordinator-to-agent direction to a byte rate, so a download takes as long as a test needs.
//! One upstream socket per agent address, as a NAT would.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Switches shared by the relay's threads.
#[derive(Default)]
struct Switches {
    /// Drop everything, both ways.
    cut: AtomicBool,
    /// Bytes per second from the coordinator to agents (0: unlimited).
    rate: AtomicU64,
    /// Datagrams forwarded to agents.
    delivered: AtomicU64,
    stop: AtomicBool,
}

/// A running relay; it stops when dropped.
pub struct Relay {
    /// Where agents should send: the relay's address.
    pub addr: SocketAddr,
    switches: Arc<Switches>,
}

impl Relay {
    /// Relays between agents and `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<Relay> {
        let front = UdpSocket::bind("127.0.0.1:0").context("binding the relay")?;
        front.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = front.local_addr()?;
        let switches = Arc::new(Switches::default());
        let s = switches.clone();
        std::thread::Builder::new()
            .name("relay-front".into())
            .spawn(move || front_loop(front, upstream, s))?;
        Ok(Relay { addr, switches })
    }

    /// Cuts the path (`true`) or restores it.
    pub fn cut(&self, cut: bool) {
        self.switches.cut.store(cut, Ordering::SeqCst);
    }

    /// Holds the coordinator-to-agent direction to `bytes_per_sec` (`None`: unlimited).
    pub fn limit(&self, bytes_per_sec: Option<u64>) {
        self.switches
            .rate
            .store(bytes_per_sec.unwrap_or(0), Ordering::SeqCst);
    }

    /// Datagrams delivered to agents so far.
    pub fn delivered(&self) -> u64 {
        self.switches.delivered.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.switches.stop.store(true, Ordering::SeqCst);
    }
}

fn front_loop(front: UdpSocket, upstream: SocketAddr, s: Arc<Switches>) {
    let mut peers: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    while !s.stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = front.recv_from(&mut buf) else {
            continue;
        };
        if s.cut.load(Ordering::SeqCst) {
            continue;
        }
        let sock = match peers.entry(from) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                match back_socket(&front, from, upstream, &s) {
                    Some(back) => e.insert(back),
                    None => continue,
                }
            }
        };
        let _ = sock.send(&buf[..n]);
    }
}

/// A socket towards the coordinator for agent `client`, with a thread relaying its answers.
fn back_socket(
    front: &UdpSocket,
    client: SocketAddr,
    upstream: SocketAddr,
    s: &Arc<Switches>,
) -> Option<UdpSocket> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.connect(upstream).ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .ok()?;
    let (reader, front) = (sock.try_clone().ok()?, front.try_clone().ok()?);
    let s = s.clone();
    std::thread::Builder::new()
        .name("relay-back".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            // Token bucket over the rate, refilled continuously, at most 64 KiB banked.
            let (mut tokens, mut last) = (0f64, Instant::now());
            while !s.stop.load(Ordering::SeqCst) {
                let Ok(n) = reader.recv(&mut buf) else {
                    continue;
                };
                if s.cut.load(Ordering::SeqCst) {
                    continue;
                }
                let rate = s.rate.load(Ordering::SeqCst);
                if rate > 0 {
                    loop {
                        let now = Instant::now();
                        tokens = (tokens + now.duration_since(last).as_secs_f64() * rate as f64)
                            .min(65536.0);
                        last = now;
                        if tokens >= n as f64 {
                            tokens -= n as f64;
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                if front.send_to(&buf[..n], client).is_ok() {
                    s.delivered.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
        .ok()?;
    Some(sock)
}
