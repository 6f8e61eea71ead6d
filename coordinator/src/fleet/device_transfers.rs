//! What each device was sent, per artifact: bytes on the wire and chunks by encoding, as the
//! coordinator served them (chunks a device took from a mirror or an object store's address
//! are not here). Counted in memory, the last [`FILES_PER_DEVICE`] artifacts per device, and
//! written to the store every [`FLUSH_EVERY`] (by [`crate::fleet::transfers_writer`]) and at
//! shutdown as this node's rows, which it reads back at start ([`crate::store::device_transfers`]). The device page adds up what
//! every node sent ([`merged`]) and names each artifact by its release.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use ferry_shared::Digest;
use ferry_shared::delta::Encoding;
use ferry_shared::wire::DeviceId;

pub use crate::store::device_transfers::{FileTransfer, SentFiles};
use crate::store::{Store, StoreError};

/// Artifacts remembered per device; the one sent longest ago goes first.
pub const FILES_PER_DEVICE: usize = 8;

/// How often what was counted since is written to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Counted {
    devices: HashMap<DeviceId, SentFiles>,
    /// Devices counted since the last write.
    dirty: HashSet<DeviceId>,
}

/// Every device's transfers from this node.
#[derive(Default)]
pub struct DeviceTransfers {
    counted: Mutex<Counted>,
}

impl DeviceTransfers {
    /// Counts a chunk of `file` sent to `device` at `now`: `len` bytes in `encoding`.
    pub fn record(&self, device: &DeviceId, file: Digest, len: u64, encoding: Encoding, now: u64) {
        let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        counted.dirty.insert(device.clone());
        let files = counted.devices.entry(device.clone()).or_default();
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

    /// `device`'s transfers from this node, the most recent first.
    pub fn of(&self, device: &DeviceId) -> SentFiles {
        let counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        let mut files = counted.devices.get(device).cloned().unwrap_or_default();
        files.sort_by_key(|f| std::cmp::Reverse(f.1.last_at));
        files
    }

    /// Takes up what this node wrote before it restarted (counts made since are kept).
    pub fn restore(&self, rows: Vec<(DeviceId, SentFiles)>) {
        let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        for (device, files) in rows {
            counted.devices.entry(device).or_insert(files);
        }
    }

    /// The devices counted since the last write, with what was sent them; marked written.
    fn take_dirty(&self) -> Vec<(DeviceId, SentFiles)> {
        let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        let dirty = std::mem::take(&mut counted.dirty);
        dirty
            .into_iter()
            .filter_map(|d| Some((d.clone(), counted.devices.get(&d)?.clone())))
            .collect()
    }

    /// Marks `devices` unwritten again (their write failed).
    fn still_dirty(&self, devices: impl IntoIterator<Item = DeviceId>) {
        let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        counted.dirty.extend(devices);
    }

    /// Writes what was counted since the last write to `store` as `node`'s rows.
    pub fn flush(&self, store: &Store, node: &str) -> Result<(), StoreError> {
        let dirty = self.take_dirty();
        if dirty.is_empty() {
            return Ok(());
        }
        store.put_device_transfers(node, &dirty).inspect_err(|_| {
            self.still_dirty(dirty.iter().map(|(d, _)| d.clone()));
        })
    }
}

/// What every node sent a device, added up per artifact: bytes and chunks summed, the first
/// and last times the earliest and latest; the most recent first, at most
/// [`FILES_PER_DEVICE`]. Pure.
pub fn merged(per_node: impl IntoIterator<Item = SentFiles>) -> SentFiles {
    let mut files: Vec<(Digest, FileTransfer)> = Vec::new();
    for (file, t) in per_node.into_iter().flatten() {
        match files.iter_mut().find(|(f, _)| *f == file) {
            Some((_, sum)) => {
                sum.wire_bytes += t.wire_bytes;
                sum.chunks += t.chunks;
                for (encoding, n) in t.encodings {
                    *sum.encodings.entry(encoding).or_default() += n;
                }
                sum.first_at = sum.first_at.min(t.first_at);
                sum.last_at = sum.last_at.max(t.last_at);
            }
            None => files.push((file, t)),
        }
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.1.last_at));
    files.truncate(FILES_PER_DEVICE);
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::SecretKey;

    fn device(seed: u8) -> DeviceId {
        DeviceId::of(&SecretKey::from_seed(&[seed; 32]).public())
    }

    fn file(i: u8) -> Digest {
        Digest::of(&[i])
    }

    #[test]
    fn a_device_keeps_its_last_files_with_bytes_and_encodings() {
        let transfers = DeviceTransfers::default();
        let device = device(7);
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

    #[test]
    fn what_was_counted_is_written_once_and_read_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        let (a, b) = (device(1), device(2));
        {
            let store = Store::open(&path).unwrap();
            let transfers = DeviceTransfers::default();
            transfers.record(&a, file(0), 100, Encoding::Zstd, 10);
            transfers.record(&b, file(1), 7, Encoding::Raw, 11);
            transfers.flush(&store, "node-a").unwrap();
            assert!(
                transfers.take_dirty().is_empty(),
                "written, no longer dirty"
            );
            transfers.record(&a, file(0), 50, Encoding::ZstdRef, 12);
            transfers.flush(&store, "node-a").unwrap();
            // Another node's row for the same device.
            store
                .put_device_transfers(
                    "node-b",
                    &[(
                        a.clone(),
                        vec![(
                            file(0),
                            FileTransfer {
                                wire_bytes: 1,
                                chunks: 1,
                                encodings: [("zstd".to_owned(), 1)].into(),
                                first_at: 5,
                                last_at: 30,
                            },
                        )],
                    )],
                )
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let restarted = DeviceTransfers::default();
        restarted.restore(store.transfers_by("node-a").unwrap());
        let seen = restarted.of(&a);
        assert_eq!(seen[0].1.wire_bytes, 150);
        assert_eq!(seen[0].1.chunks, 2);
        assert_eq!(restarted.of(&b)[0].1.wire_bytes, 7);
        // Counting goes on from what was read back.
        restarted.record(&a, file(0), 10, Encoding::Zstd, 40);
        assert_eq!(restarted.of(&a)[0].1.wire_bytes, 160);

        let rows = store.device_transfers(&a).unwrap();
        assert_eq!(
            rows.iter()
                .map(|(node, _)| node.as_str())
                .collect::<Vec<_>>(),
            ["node-a", "node-b"]
        );
        let sum = merged(rows.into_iter().map(|(_, files)| files));
        assert_eq!(sum.len(), 1);
        assert_eq!(sum[0].1.wire_bytes, 151);
        assert_eq!(sum[0].1.encodings.get("zstd"), Some(&2));
        assert_eq!((sum[0].1.first_at, sum[0].1.last_at), (5, 30));
        assert!(store.device_transfers(&device(3)).unwrap().is_empty());
    }

    #[test]
    fn the_merge_keeps_the_most_recent_files() {
        let sent = |from: u8, to: u8| -> SentFiles {
            (from..to)
                .map(|i| {
                    (
                        file(i),
                        FileTransfer {
                            last_at: u64::from(i),
                            ..FileTransfer::default()
                        },
                    )
                })
                .collect()
        };
        let sum = merged([sent(0, 6), sent(4, 12)]);
        assert_eq!(sum.len(), FILES_PER_DEVICE);
        assert_eq!(sum[0].0, file(11));
        assert!(sum.iter().all(|(f, _)| *f != file(0)));
    }
}
