//! What each device was sent, per artifact: bytes on the wire and chunks by encoding, as the
//! coordinator served them (chunks a device took from a mirror or an object store's address
//! are not here). Kept in memory since the coordinator started, the last
//! [`FILES_PER_DEVICE`] artifacts per device; the device page names each by its release.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use ferry_shared::Digest;
use ferry_shared::delta::Encoding;
use ferry_shared::wire::DeviceId;

/// Artifacts remembered per device; the one sent longest ago goes first.
pub const FILES_PER_DEVICE: usize = 8;

/// One artifact's transfer to one device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileTransfer {
    /// Bytes sent, as on the wire (compressed or delta-encoded).
    pub wire_bytes: u64,
    /// Chunks sent.
    pub chunks: u64,
    /// Chunks sent per encoding (`zstd`, `zstd-ref`, `tensors`, …).
    pub encodings: BTreeMap<String, u64>,
    /// When its first and last chunk went (Unix seconds).
    pub first_at: u64,
    /// See `first_at`.
    pub last_at: u64,
}

/// Every device's transfers.
#[derive(Default)]
pub struct DeviceTransfers {
    devices: Mutex<HashMap<DeviceId, Vec<(Digest, FileTransfer)>>>,
}

impl DeviceTransfers {
    /// Counts a chunk of `file` sent to `device` at `now`: `len` bytes in `encoding`.
    pub fn record(&self, device: &DeviceId, file: Digest, len: u64, encoding: Encoding, now: u64) {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let files = devices.entry(device.clone()).or_default();
        let at = match files.iter().position(|(f, _)| *f == file) {
            Some(at) => at,
            None => {
                if files.len() >= FILES_PER_DEVICE
                    && let Some(oldest) = files
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, (_, t))| t.last_at)
                        .map(|(i, _)| i)
                {
                    files.remove(oldest);
                }
                files.push((
                    file,
                    FileTransfer {
                        first_at: now,
                        ..FileTransfer::default()
                    },
                ));
                files.len() - 1
            }
        };
        let transfer = &mut files[at].1;
        transfer.wire_bytes += len;
        transfer.chunks += 1;
        *transfer.encodings.entry(encoding.to_string()).or_default() += 1;
        transfer.last_at = now;
    }

    /// `device`'s transfers, the most recent first.
    pub fn of(&self, device: &DeviceId) -> Vec<(Digest, FileTransfer)> {
        let devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let mut files = devices.get(device).cloned().unwrap_or_default();
        files.sort_by_key(|f| std::cmp::Reverse(f.1.last_at));
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::SecretKey;

    #[test]
    fn a_device_keeps_its_last_files_with_bytes_and_encodings() {
        let transfers = DeviceTransfers::default();
        let device = DeviceId::of(&SecretKey::from_seed(&[7; 32]).public());
        let file = |i: u8| Digest::of(&[i]);
        transfers.record(&device, file(0), 100, Encoding::Zstd, 10);
        transfers.record(&device, file(0), 40, Encoding::ZstdRef, 11);
        let seen = transfers.of(&device);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1.wire_bytes, 140);
        assert_eq!(seen[0].1.chunks, 2);
        assert_eq!(seen[0].1.encodings.get("zstd-ref"), Some(&1));
        assert_eq!((seen[0].1.first_at, seen[0].1.last_at), (10, 11));
        for i in 1..=FILES_PER_DEVICE as u8 {
            transfers.record(&device, file(i), 1, Encoding::Raw, 20 + u64::from(i));
        }
        let seen = transfers.of(&device);
        assert_eq!(seen.len(), FILES_PER_DEVICE);
        assert!(seen.iter().all(|(f, _)| *f != file(0)), "the oldest went");
        assert_eq!(seen[0].0, file(FILES_PER_DEVICE as u8), "most recent first");
    }
}
