//! How many deltas each device may have encoded afresh. A delta served from the cache costs
//! nothing; one encoded for a device costs a worker's CPU. A device that updates needs each
//! changed chunk of the artifact encoded about once, so each device may have at most
//! [`FRESH_PER_CHUNK`] fresh encodes per chunk of an artifact per [`PERIOD_SECS`]; past that
//! it gets the stored chunks, and one device asking for thousands of deltas against shifted
//! windows cannot keep the encoders from everyone else.

use std::collections::HashMap;
use std::sync::Mutex;

use ferry_shared::Digest;
use ferry_shared::wire::DeviceId;

/// Fresh encodes a device may have per chunk of an artifact, per period (one, and one more
/// for a retry against another version it holds).
pub const FRESH_PER_CHUNK: u64 = 2;

/// The period over which fresh encodes are counted.
pub const PERIOD_SECS: u64 = 24 * 3600;

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 100_000;

/// Fresh encodes per device and artifact.
#[derive(Default)]
pub struct EncodeBudget {
    spent: Mutex<HashMap<(DeviceId, Digest), Spent>>,
}

struct Spent {
    count: u64,
    since: u64,
}

impl EncodeBudget {
    /// Takes one fresh encode for `device` on `file` (of `chunks` chunks) at `now`; false when
    /// its budget for that artifact is spent.
    pub fn take(&self, device: &DeviceId, file: Digest, chunks: usize, now: u64) -> bool {
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        if spent.len() >= SWEEP_AT {
            spent.retain(|_, s| now.saturating_sub(s.since) < PERIOD_SECS);
        }
        let entry = spent.entry((device.clone(), file)).or_insert(Spent {
            count: 0,
            since: now,
        });
        if now.saturating_sub(entry.since) >= PERIOD_SECS {
            *entry = Spent {
                count: 0,
                since: now,
            };
        }
        let allowed = FRESH_PER_CHUNK.saturating_mul(chunks.max(1) as u64);
        if entry.count >= allowed {
            return false;
        }
        entry.count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(n: u8) -> DeviceId {
        DeviceId::parse(&format!("{n:020x}")).expect("a device id")
    }

    #[test]
    fn a_device_gets_two_fresh_encodes_per_chunk_then_none_until_the_period_ends() {
        let budget = EncodeBudget::default();
        let file = Digest::of(b"artifact");
        let taken = (0..100)
            .filter(|_| budget.take(&device(1), file, 10, 0))
            .count();
        assert_eq!(taken, 20);
        assert!(
            budget.take(&device(2), file, 10, 0),
            "another device has its own"
        );
        assert!(!budget.take(&device(1), file, 10, PERIOD_SECS - 1));
        assert!(
            budget.take(&device(1), file, 10, PERIOD_SECS),
            "a new period"
        );
    }
}
