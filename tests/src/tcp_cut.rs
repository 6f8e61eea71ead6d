//! A TCP relay that cuts one connection after it has carried a given number of bytes towards
//! the server, as a dropped link would; every other connection passes whole. For the tests of
//! uploads that resume.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Result;

/// The relay; it runs until the test process ends.
pub struct CutRelay {
    /// Where clients connect.
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Bytes the cut connection carried towards the server.
    carried: Arc<AtomicU64>,
}

impl CutRelay {
    /// Relays to `target`, cutting the first connection that carries more than `cut_after`
    /// bytes towards it (at that point).
    pub fn start(target: SocketAddr, cut_after: u64) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let relay = Self {
            addr: listener.local_addr()?,
            cut: Arc::default(),
            carried: Arc::default(),
        };
        let (cut, carried) = (relay.cut.clone(), relay.carried.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let (cut, carried) = (cut.clone(), carried.clone());
                std::thread::spawn(move || relay_one(client, server, cut_after, &cut, &carried));
            }
        });
        Ok(relay)
    }

    /// Whether a connection was cut, and how many bytes it had carried to the server.
    pub fn cut(&self) -> Option<u64> {
        self.cut
            .load(Ordering::SeqCst)
            .then(|| self.carried.load(Ordering::SeqCst))
    }
}

fn relay_one(
    client: TcpStream,
    server: TcpStream,
    cut_after: u64,
    cut: &AtomicBool,
    carried: &AtomicU64,
) {
    let (Ok(mut from_client), Ok(mut to_client)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let (mut to_server, mut from_server) = (server, client);
    // Server to client, whole.
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut to_client, &mut from_server);
        let _ = from_server.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match from_client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let take = if sent + n as u64 > cut_after && !cut.swap(true, Ordering::SeqCst) {
            // This connection is the one cut: up to the limit, then nothing.
            let room = (cut_after - sent.min(cut_after)) as usize;
            let _ = to_server.write_all(&buf[..room]);
            carried.store(sent + room as u64, Ordering::SeqCst);
            let _ = to_server.shutdown(Shutdown::Both);
            let _ = from_client.shutdown(Shutdown::Both);
            return;
        } else {
            n
        };
        if to_server.write_all(&buf[..take]).is_err() {
            break;
        }
        sent += take as u64;
    }
    let _ = to_server.shutdown(Shutdown::Write);
    let _ = back.join();
}
