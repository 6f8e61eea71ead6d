//! The delta cache: encoded chunks, keyed by what they were encoded from, under
//! `deltas/<2 hex>/<64 hex>`. Each file is `BLAKE3(body) || body` with `body` the postcard
//! [`CachedDelta`]; a file that does not check out is a miss (and is removed), so a torn write
//! after a crash costs one re-encode, never a wrong answer from the cache itself. The agent
//! still verifies every decoded chunk: the cache is trusted for speed, not for integrity.

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
    /// The payload.
    pub payload: Vec<u8>,
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

    /// Where the entry for `key` lives.
    pub fn path(&self, key: &DeltaKey) -> PathBuf {
        let hex = key.digest().to_hex();
        self.root.join(&hex[..2]).join(hex)
    }

    /// The cached encoding for `key`, if a sound one is stored.
    pub fn get(&self, key: &DeltaKey) -> Option<Encoded> {
        let path = self.path(key);
        let entry = read_entry(&path).ok()?;
        match entry {
            Some(CachedDelta { encoding, payload }) => Some(Encoded { encoding, payload }),
            None => {
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores `encoded` for `key` (atomically; not fsynced: losing it costs an encode).
    pub fn put(&self, key: &DeltaKey, encoded: &Encoded) -> io::Result<()> {
        let path = self.path(key);
        let entry = CachedDelta {
            encoding: encoded.encoding,
            payload: encoded.payload.clone(),
        };
        write_entry(&self.root.join("tmp"), &path, &entry)
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
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = tmp_dir.join(hex::encode(nonce));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(&Digest::of(&body).0)?;
        file.write_all(&body)?;
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
        assert_eq!(cache.get(&key(1)), Some(encoded));
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
}
