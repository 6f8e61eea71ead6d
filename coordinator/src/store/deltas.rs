//! The delta cache: encoded chunks, keyed by what they were encoded from, under
//! `deltas/<2 hex>/<64 hex>`. Each file is `BLAKE3(body) || body` with `body` the postcard
//! [`CachedDelta`]; a file that does not check out is a miss (and is removed), so a torn write
//! after a crash costs one re-encode, never a wrong answer from the cache itself. The agent
//! still verifies every decoded chunk: the cache is trusted for speed, not for integrity.
//!
//! When no encoding beat the stored chunk, the entry says so ([`Cached::Stored`]: a zstd
//! payload of no bytes, which no zstd frame is) instead of holding a copy of the chunk.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ferry_shared::Digest;
use ferry_shared::delta::{Encoded, Encoding};
use ferry_shared::wire::WindowRef;
use serde::{Deserialize, Serialize};

/// Encoded chunks on disk.
#[derive(Clone, Debug)]
pub struct DeltaCache {
    root: PathBuf,
}

/// A cache entry as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedDelta {
    /// The encoding.
    pub encoding: Encoding,
    /// The payload. Read and written whole (postcard writes a byte string and a sequence of
    /// bytes alike: entries written before are read the same).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// [`CachedDelta`] borrowing its payload, to write an entry without copying it.
#[derive(Serialize)]
struct CachedDeltaRef<'a> {
    encoding: Encoding,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
}

/// What the cache holds for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cached {
    /// This encoding.
    Encoded(Encoded),
    /// Nothing beat the stored chunk: send it as stored.
    Stored,
}

/// What a cached delta was made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct DeltaKey {
    /// The target chunk.
    pub chunk: Digest,
    /// The window it was encoded against.
    pub window: WindowRef,
}

impl DeltaKey {
    /// The cache name.
    pub fn digest(&self) -> Digest {
        // Digests and integers always encode.
        let bytes = postcard::to_allocvec(self).unwrap_or_default();
        Digest::keyed_context("ferry/delta-cache/v2", &bytes)
    }
}

impl DeltaCache {
    /// A cache under `root`; clears leftovers of interrupted writes.
    pub fn new(root: PathBuf) -> io::Result<Self> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp)?;
        for entry in fs::read_dir(&tmp)?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        Ok(Self { root })
    }

    /// Where the entry for `key` lives (only the store knows entries are files).
    pub(super) fn path(&self, key: &DeltaKey) -> PathBuf {
        let hex = key.digest().to_hex();
        self.root.join(&hex[..2]).join(hex)
    }

    /// Whether an entry is stored for `key` (without reading it).
    pub fn contains(&self, key: &DeltaKey) -> bool {
        self.path(key).exists()
    }

    /// What is cached for `key`, if a sound entry is stored.
    pub fn get(&self, key: &DeltaKey) -> Option<Cached> {
        let path = self.path(key);
        let entry = read_entry(&path).ok()?;
        match entry {
            Some(CachedDelta {
                encoding: Encoding::Zstd,
                payload,
            }) if payload.is_empty() => Some(Cached::Stored),
            Some(CachedDelta { encoding, payload }) => {
                Some(Cached::Encoded(Encoded { encoding, payload }))
            }
            None => {
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores `encoded` for `key` (atomically; not fsynced: losing it costs an encode).
    pub fn put(&self, key: &DeltaKey, encoded: &Encoded) -> io::Result<()> {
        let entry = CachedDeltaRef {
            encoding: encoded.encoding,
            payload: &encoded.payload,
        };
        self.write(key, &entry)
    }

    /// Stores that nothing beat the stored chunk for `key`.
    pub fn put_stored(&self, key: &DeltaKey) -> io::Result<()> {
        let entry = CachedDeltaRef {
            encoding: Encoding::Zstd,
            payload: &[],
        };
        self.write(key, &entry)
    }

    fn write(&self, key: &DeltaKey, entry: &CachedDeltaRef<'_>) -> io::Result<()> {
        let body = postcard::to_allocvec(entry).map_err(io::Error::other)?;
        write_body(&self.root.join("tmp"), &self.path(key), &body)
    }

    /// Every entry's path (for maintenance and tests).
    pub fn paths(&self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for dir in fs::read_dir(&self.root)?.flatten() {
            if dir.file_name() == "tmp" || !dir.path().is_dir() {
                continue;
            }
            for entry in fs::read_dir(dir.path())?.flatten() {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Reads an entry file: `Ok(None)` when it is damaged.
pub fn read_entry(path: &Path) -> io::Result<Option<CachedDelta>> {
    let bytes = fs::read(path)?;
    if bytes.len() < 32 {
        return Ok(None);
    }
    let (sum, body) = bytes.split_at(32);
    if Digest::of(body).0 != sum {
        return Ok(None);
    }
    Ok(postcard::from_bytes(body).ok())
}

/// Writes an entry file atomically through `tmp_dir`.
pub fn write_entry(tmp_dir: &Path, path: &Path, entry: &CachedDelta) -> io::Result<()> {
    let body = postcard::to_allocvec(entry).map_err(io::Error::other)?;
    write_body(tmp_dir, path, &body)
}

/// Writes `BLAKE3(body) || body` to `path` atomically through `tmp_dir`.
fn write_body(tmp_dir: &Path, path: &Path, body: &[u8]) -> io::Result<()> {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = tmp_dir.join(hex::encode(nonce));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(&Digest::of(body).0)?;
        file.write_all(body)?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> DeltaKey {
        DeltaKey {
            chunk: Digest::of(&[n]),
            window: WindowRef {
                file: Digest::of(b"old"),
                offset: 0,
                len: 100,
                at: 10,
            },
        }
    }

    #[test]
    fn entries_round_trip_and_damage_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DeltaCache::new(dir.path().to_owned()).unwrap();
        let encoded = Encoded {
            encoding: Encoding::XorPlanes { width: 4 },
            payload: vec![1, 2, 3],
        };
        assert_eq!(cache.get(&key(1)), None);
        cache.put(&key(1), &encoded).unwrap();
        assert_eq!(cache.get(&key(1)), Some(Cached::Encoded(encoded)));
        assert_eq!(cache.get(&key(2)), None);
        assert_eq!(cache.paths().unwrap().len(), 1);

        let path = cache.path(&key(1));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert_eq!(cache.get(&key(1)), None);
        assert!(!path.exists(), "a damaged entry is removed");
    }

    /// Every chunk that no delta beat was cached as a full copy of its stored frame, written
    /// and read (a byte at a time, by serde) for each: a 512 MiB update of unrelated bytes
    /// wrote 512 MiB of cache.
    #[test]
    fn a_chunk_no_delta_beats_is_cached_as_a_marker_not_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DeltaCache::new(dir.path().to_owned()).unwrap();
        cache.put_stored(&key(3)).unwrap();
        assert_eq!(cache.get(&key(3)), Some(Cached::Stored));
        assert!(fs::metadata(cache.path(&key(3))).unwrap().len() < 64);
    }

    /// Entries written before payloads were (de)serialized as byte strings read the same.
    #[test]
    fn entries_written_as_a_sequence_of_bytes_still_read() {
        #[derive(Serialize)]
        struct Before {
            encoding: Encoding,
            payload: Vec<u8>,
        }
        let payload: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let before = postcard::to_allocvec(&Before {
            encoding: Encoding::Covers,
            payload: payload.clone(),
        })
        .unwrap();
        let now = postcard::to_allocvec(&CachedDeltaRef {
            encoding: Encoding::Covers,
            payload: &payload,
        })
        .unwrap();
        assert_eq!(before, now);
        let read: CachedDelta = postcard::from_bytes(&before).unwrap();
        assert_eq!(read.payload, payload);
    }
}
