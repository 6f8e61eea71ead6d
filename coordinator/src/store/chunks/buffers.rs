//! Buffers kept from one chunk read to the next, and frames lent to QUIC that come back to
//! them once sent.

use std::sync::{Arc, Mutex, PoisonError};

/// Buffers kept from one read to the next, up to [`Buffers::BUDGET`] bytes of them. A chunk
/// is larger than the allocator's mapping threshold, so a fresh buffer per read is a fresh
/// mapping whose every page faults in, and is unmapped again when dropped: serving a 1 GiB
/// download read 850 chunks, each into two such buffers (its frame and its checked bytes).
#[derive(Debug, Default)]
pub(super) struct Buffers(Mutex<Vec<Vec<u8>>>);

impl Buffers {
    /// What one pool keeps at most, in allocated bytes: a few default chunks (1 MiB on
    /// average), so that each read of a download and of its read-ahead finds one.
    pub(super) const BUDGET: usize = 8 * 1024 * 1024;

    pub(super) fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    /// Keeps `buffer` for a later read, unless that would keep over the budget.
    pub(super) fn give(&self, buffer: Vec<u8>) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let held: usize = kept.iter().map(Vec::capacity).sum();
        if held + buffer.capacity() <= Self::BUDGET {
            kept.push(buffer);
        }
    }

    pub(super) fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// A frame's buffer on its way out through QUIC, which holds it until the peer has
/// acknowledged every byte: dropped, it goes back to the pool it came from.
pub(super) struct Recycled {
    pub(super) buffer: Vec<u8>,
    pub(super) pool: Arc<Buffers>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_buffers_stay_within_their_budget() {
        let pool = Buffers::default();
        for _ in 0..4 {
            pool.give(Vec::with_capacity(Buffers::BUDGET / 3));
        }
        let kept = pool.0.lock().unwrap();
        assert_eq!(kept.len(), 3);
        assert!(kept.iter().map(Vec::capacity).sum::<usize>() <= Buffers::BUDGET);
        drop(kept);
        pool.give(Vec::with_capacity(Buffers::BUDGET + 1));
        assert_eq!(pool.0.lock().unwrap().len(), 3);
        pool.clear();
        assert!(pool.take().capacity() == 0);
    }
}
