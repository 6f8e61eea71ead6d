//! Content-defined chunking (FastCDC) and the chunk index of an artifact.
//!
//! An artifact is cut where its content says so, not at fixed offsets, so an insertion moves
//! only the boundaries near it and everything else stays identical chunk for chunk: those
//! chunks are never sent again. The [`ChunkIndex`] lists each chunk's length and BLAKE3 in
//! order; its canonical bytes are hashed and that digest is what a signed manifest names,
//! which puts every chunk under the publisher's signature without bloating the manifest
//! (a 10 GiB model is about ten thousand chunks).

use std::collections::HashSet;
use std::io::Read;

use fastcdc::v2020::{
    AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN, StreamCDC,
};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};

/// FastCDC size bounds, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkParams {
    /// Smallest chunk (except the last).
    pub min: u32,
    /// Target average.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

impl ChunkParams {
    /// Ferry's default bounds: 256 KiB / 1 MiB / 4 MiB. To be tuned by the transfer
    /// benchmark on real artifact pairs.
    pub const DEFAULT: ChunkParams = ChunkParams {
        min: 256 * 1024,
        avg: 1024 * 1024,
        max: 4 * 1024 * 1024,
    };

    /// Checks the bounds FastCDC accepts and their order.
    pub fn validate(&self) -> Result<(), ChunkError> {
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max;
        if ok {
            Ok(())
        } else {
            Err(ChunkError::Params(*self))
        }
    }
}

/// One chunk: its length and content hash. Its offset is the sum of the lengths before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Length in bytes.
    pub len: u32,
    /// BLAKE3 of the chunk.
    pub hash: Digest,
}

/// The chunks of one artifact, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkIndex {
    /// The bounds it was cut with.
    pub params: ChunkParams,
    /// The chunks.
    pub chunks: Vec<ChunkRef>,
}

/// Chunking and chunk-index failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// Bounds FastCDC does not accept.
    #[error(
        "chunk bounds {0:?} are invalid (need {MINIMUM_MIN}..={MINIMUM_MAX} ≤ {AVERAGE_MIN}..={AVERAGE_MAX} ≤ {MAXIMUM_MIN}..={MAXIMUM_MAX}, in order)"
    )]
    Params(ChunkParams),
    /// Reading the artifact failed.
    #[error("reading the artifact: {0}")]
    Read(String),
    /// A chunk index that does not decode or does not describe the artifact.
    #[error("invalid chunk index: {0}")]
    Invalid(String),
}

/// What an artifact needs beyond the chunks a holder has ([`ChunkIndex::missing_from`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Missing {
    /// Distinct chunks to fetch.
    pub chunks: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Bytes available without fetching.
    pub reused: u64,
}

/// An artifact's index, with the whole-file hash and size computed in the same pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunked {
    /// The chunks.
    pub index: ChunkIndex,
    /// BLAKE3 of the whole artifact.
    pub hash: Digest,
    /// Its size.
    pub size: u64,
}

impl ChunkIndex {
    /// Chunks a stream in one pass; memory is bounded by the largest chunk.
    pub fn build<R: Read>(reader: R, params: ChunkParams) -> Result<Chunked, ChunkError> {
        Self::build_visiting(reader, params, |_, _| Ok(()))
    }

    /// Like [`ChunkIndex::build`], handing each chunk's bytes to `visit` as it is cut (to store
    /// it, say); a visitor error stops the pass and is returned as [`ChunkError::Read`].
    pub fn build_visiting<R: Read>(
        reader: R,
        params: ChunkParams,
        mut visit: impl FnMut(&ChunkRef, &[u8]) -> Result<(), String>,
    ) -> Result<Chunked, ChunkError> {
        params.validate()?;
        let mut whole = Hasher::new();
        let mut chunks = Vec::new();
        let mut size = 0u64;
        let cdc = StreamCDC::new(
            reader,
            params.min as usize,
            params.avg as usize,
            params.max as usize,
        );
        for chunk in cdc {
            let chunk = chunk.map_err(|e| ChunkError::Read(e.to_string()))?;
            whole.update(&chunk.data);
            size += chunk.data.len() as u64;
            let chunk_ref = ChunkRef {
                // FastCDC never cuts more than `max` (a u32) bytes.
                len: u32::try_from(chunk.data.len())
                    .map_err(|_| ChunkError::Read("chunk larger than the maximum".into()))?,
                hash: Digest::of(&chunk.data),
            };
            visit(&chunk_ref, &chunk.data).map_err(ChunkError::Read)?;
            chunks.push(chunk_ref);
        }
        Ok(Chunked {
            index: ChunkIndex { params, chunks },
            hash: whole.finish(),
            size,
        })
    }

    /// Total length of the artifact.
    pub fn total_len(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.len)).sum()
    }

    /// Each chunk with its offset.
    pub fn spans(&self) -> impl Iterator<Item = (u64, &ChunkRef)> {
        self.chunks.iter().scan(0u64, |offset, c| {
            let at = *offset;
            *offset += u64::from(c.len);
            Some((at, c))
        })
    }

    /// What this artifact needs beyond the chunks in `have`: each distinct chunk counted once
    /// (a repeat is reused, like a chunk in `have`).
    pub fn missing_from(&self, have: &HashSet<Digest>) -> Missing {
        let mut seen = HashSet::new();
        let mut out = Missing::default();
        for c in &self.chunks {
            if have.contains(&c.hash) || !seen.insert(c.hash) {
                out.reused += u64::from(c.len);
            } else {
                out.chunks += 1;
                out.bytes += u64::from(c.len);
            }
        }
        out
    }

    /// Canonical bytes (postcard).
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        // Plain integers and arrays always encode.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// The digest a manifest names to put this index under its signature.
    pub fn digest(&self) -> Digest {
        Digest::keyed_context("ferry/chunk-index/v1", &self.to_canonical_bytes())
    }

    /// Decodes canonical bytes and checks that they describe an artifact of `size` bytes cut
    /// with valid bounds: no empty chunk, none over the maximum, none but the last under the
    /// minimum.
    pub fn from_canonical_bytes(bytes: &[u8], size: u64) -> Result<Self, ChunkError> {
        let invalid = |m: String| ChunkError::Invalid(m);
        let index: ChunkIndex = postcard::from_bytes(bytes).map_err(|e| invalid(e.to_string()))?;
        if index.to_canonical_bytes() != bytes {
            return Err(invalid("not in canonical form".into()));
        }
        index.params.validate()?;
        let last = index.chunks.len().saturating_sub(1);
        for (i, c) in index.chunks.iter().enumerate() {
            if c.len == 0 || c.len > index.params.max || (i < last && c.len < index.params.min) {
                return Err(invalid(format!(
                    "chunk {i} is {} bytes, outside {}..={}",
                    c.len, index.params.min, index.params.max
                )));
            }
        }
        if index.total_len() != size {
            return Err(invalid(format!(
                "chunks add up to {} bytes, the artifact is {size}",
                index.total_len()
            )));
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{SMALL, noise};

    #[test]
    fn chunks_cover_the_artifact_and_hash_it_whole() {
        let data = noise(1, 1 << 20);
        let c = ChunkIndex::build(data.as_slice(), SMALL).unwrap();
        assert_eq!(c.size, data.len() as u64);
        assert_eq!(c.hash, Digest::of(&data));
        assert_eq!(c.index.total_len(), c.size);
        assert!(c.index.chunks.len() > 64, "about 128 chunks of 8 KiB");
        for (offset, chunk) in c.index.spans() {
            let at = offset as usize;
            assert_eq!(chunk.hash, Digest::of(&data[at..at + chunk.len as usize]));
        }
    }

    #[test]
    fn an_insertion_changes_only_the_chunks_around_it() {
        let old = noise(2, 1 << 20);
        let mut new = old.clone();
        new.splice(300_000..300_000, noise(3, 100));
        let a = ChunkIndex::build(old.as_slice(), SMALL).unwrap().index;
        let b = ChunkIndex::build(new.as_slice(), SMALL).unwrap().index;
        let have: HashSet<Digest> = a.chunks.iter().map(|c| c.hash).collect();
        let missing = b.missing_from(&have);
        assert!(
            missing.bytes < 3 * u64::from(SMALL.max),
            "only the neighbourhood changed: {missing:?}"
        );
        assert!(missing.reused > 900_000, "{missing:?}");
        assert_eq!(missing.bytes + missing.reused, new.len() as u64);
    }

    #[test]
    fn the_index_round_trips_and_refuses_what_does_not_fit() {
        let data = noise(4, 200_000);
        let c = ChunkIndex::build(data.as_slice(), SMALL).unwrap();
        let bytes = c.index.to_canonical_bytes();
        assert_eq!(
            ChunkIndex::from_canonical_bytes(&bytes, c.size).unwrap(),
            c.index
        );
        assert!(
            ChunkIndex::from_canonical_bytes(&bytes, c.size + 1).is_err(),
            "size mismatch"
        );
        let mut long = bytes.clone();
        long.push(0);
        assert!(
            ChunkIndex::from_canonical_bytes(&long, c.size).is_err(),
            "trailing bytes"
        );
        let mut empty_chunk = c.index.clone();
        empty_chunk.chunks.insert(
            0,
            ChunkRef {
                len: 0,
                hash: Digest::of(b""),
            },
        );
        assert!(
            ChunkIndex::from_canonical_bytes(&empty_chunk.to_canonical_bytes(), c.size).is_err()
        );
        let mut oversized = c.index.clone();
        oversized.chunks = vec![ChunkRef {
            len: SMALL.max + 1,
            hash: Digest::of(b""),
        }];
        assert!(
            ChunkIndex::from_canonical_bytes(
                &oversized.to_canonical_bytes(),
                u64::from(SMALL.max) + 1
            )
            .is_err()
        );
        assert_ne!(c.index.digest(), oversized.digest());
    }

    #[test]
    fn invalid_bounds_are_refused() {
        for bad in [
            ChunkParams {
                min: 10,
                avg: 8192,
                max: 32768,
            },
            ChunkParams {
                min: 16384,
                avg: 8192,
                max: 32768,
            },
            ChunkParams {
                min: 2048,
                avg: 8192,
                max: 64 << 20,
            },
        ] {
            assert!(
                matches!(
                    ChunkIndex::build(&b"x"[..], bad),
                    Err(ChunkError::Params(_))
                ),
                "{bad:?}"
            );
        }
        assert!(ChunkParams::DEFAULT.validate().is_ok());
    }
}
