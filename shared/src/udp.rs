//! The UDP sockets QUIC runs on, for both sides: bound with kernel buffers large enough that a
//! burst is queued rather than dropped.
//!
//! The kernel's default receive buffer (about 200 KiB on Linux) holds a few milliseconds of a
//! fast download. A process busy for longer (an agent writing a chunk to disk, a coordinator
//! answering thousands of sessions at once) loses the datagrams that arrive meanwhile, and
//! QUIC's sender reads each loss as congestion: it halves its window and waits out a probe
//! timer. quic-go asks for 7 MiB for the same reason.

use std::net::SocketAddr;

/// A UDP socket bound to `addr`, with send and receive buffers of up to `buffer_bytes` each.
/// The kernel grants at most its limit (`net.core.rmem_max` / `wmem_max` on Linux); a smaller
/// grant is not an error, and [`Bound::receive_buffer`] says what was granted so the caller
/// can tell the operator.
pub fn bind(addr: SocketAddr, buffer_bytes: usize) -> std::io::Result<Bound> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Accept IPv4 on an unspecified IPv6 address too, as std's bind does by default.
        let _ = socket.set_only_v6(false);
    }
    // Advisory: a refusal leaves the default, which still works, only with more drops.
    let _ = socket.set_recv_buffer_size(buffer_bytes);
    let _ = socket.set_send_buffer_size(buffer_bytes);
    socket.bind(&addr.into())?;
    let receive_buffer = socket.recv_buffer_size().unwrap_or(0);
    Ok(Bound {
        socket: socket.into(),
        receive_buffer,
    })
}

/// A bound socket and the receive buffer the kernel granted it.
#[derive(Debug)]
pub struct Bound {
    /// The socket, bound.
    pub socket: std::net::UdpSocket,
    /// Bytes; Linux reports twice the granted size (its bookkeeping overhead included).
    pub receive_buffer: usize,
}

/// The receive buffer [`bind`] should get when asking for `wanted` bytes: Linux grants up to
/// `net.core.rmem_max` and reports twice what it granted. `None` off Linux (or without
/// `/proc`), where nothing is promised.
pub fn expected_receive_buffer(wanted: usize) -> Option<usize> {
    let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max").ok()?;
    let max: usize = max.trim().parse().ok()?;
    Some(wanted.min(max) * 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_socket_has_the_receive_buffer_it_asked_for_up_to_the_limit() {
        let wanted = 4 * 1024 * 1024;
        let bound = bind("127.0.0.1:0".parse().unwrap(), wanted).unwrap();
        assert!(bound.socket.local_addr().unwrap().port() != 0);
        if let Some(expected) = expected_receive_buffer(wanted) {
            assert!(
                bound.receive_buffer >= expected,
                "granted {}, expected {expected}",
                bound.receive_buffer
            );
        }
    }
}
