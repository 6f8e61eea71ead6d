//! Offline bundles: one file that carries a release to a device no coordinator reaches (a USB
//! stick, an air gap), with everything a network update would have brought: the signed
//! envelope, the root chain and a snapshot, and per build the chunk index and the chunks the
//! device lacks, whole or as deltas against the version it is made for.
//!
//! ```text
//! "FRYBNDL\0"  format (u16 LE)
//! chunk payloads, back to back, as encoded for the wire
//! header (postcard BundleHeader)
//! trailer: header length (u32 LE), header offset (u64 LE), "FRYBNDL\0"
//! ```
//!
//! The header comes last so that a bundle is written in one pass with one chunk in memory.
//! Nothing in it is trusted: the envelope and the trust metadata are checked as a desired
//! state from a coordinator is, the chunk index against the signed manifest, and every chunk
//! against the index; the offsets only say where to read, and are bounded here.

use std::io::{self, Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

use crate::delta::Encoding;
use crate::digest::Digest;
use crate::name::ModelName;
use crate::seal::WrappedKey;
use crate::version::Version;
use crate::wire::{DesiredRelease, DeviceId, MAX_INDEX_BYTES, TrustBundle, WindowRef};

/// The first and last eight bytes of a bundle.
pub const MAGIC: [u8; 8] = *b"FRYBNDL\0";
/// The bundle layout this build writes (and the newest it reads).
/// 1: the first.
/// 2: sealed bundles ([`BundleHeader::sealed_for`]): payloads encrypted for named devices.
pub const FORMAT: u16 = 2;
/// Where the first chunk payload starts.
pub const FIRST_OFFSET: u64 = MAGIC.len() as u64 + 2;
/// Bytes of the trailer.
pub const TRAILER_LEN: u64 = 4 + 8 + MAGIC.len() as u64;
/// Largest header read: a chunk index per build ([`MAX_INDEX_BYTES`] each), a few builds.
pub const MAX_HEADER: u64 = 8 * MAX_INDEX_BYTES + (4 << 20);
/// Most builds one bundle carries.
pub const MAX_BUILDS: usize = 8;
/// Most devices one bundle is sealed for.
pub const MAX_SEALED_FOR: usize = 65_536;

/// What a bundle holds besides its chunk payloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleHeader {
    /// The model.
    pub model: ModelName,
    /// The release carried (its signed envelope is authoritative).
    pub release: DesiredRelease,
    /// The version its deltas are against (the device must hold it); `None`: every chunk whole.
    pub for_version: Option<Version>,
    /// When the coordinator made it (Unix seconds, its clock).
    pub created_at: u64,
    /// The root chain and a snapshot listing the release, when the coordinator has a root.
    pub trust: Option<TrustBundle>,
    /// The builds carried (variants of the release), each with its chunks.
    pub builds: Vec<BundledBuild>,
    /// When sealed: the content key every payload is sealed with ([`crate::seal`]), wrapped
    /// for each device that may open it. Empty: the payloads are as the wire carries them.
    pub sealed_for: Vec<WrappedKey>,
}

impl BundleHeader {
    /// The key wrapped for `device`, when the bundle is sealed for it.
    pub fn key_for(&self, device: &DeviceId) -> Option<&WrappedKey> {
        self.sealed_for.iter().find(|w| &w.device == device)
    }
}

/// The header as format 1 wrote it (no sealing).
#[derive(Deserialize)]
struct HeaderV1 {
    model: ModelName,
    release: DesiredRelease,
    for_version: Option<Version>,
    created_at: u64,
    trust: Option<TrustBundle>,
    builds: Vec<BundledBuild>,
}

impl From<HeaderV1> for BundleHeader {
    fn from(v1: HeaderV1) -> Self {
        Self {
            model: v1.model,
            release: v1.release,
            for_version: v1.for_version,
            created_at: v1.created_at,
            trust: v1.trust,
            builds: v1.builds,
            sealed_for: Vec::new(),
        }
    }
}

/// One build (variant) of the release in a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundledBuild {
    /// The build's whole-file hash (as the manifest names it).
    pub file: Digest,
    /// Its chunk index, canonical bytes (hashes to the manifest's digest).
    pub index: Vec<u8>,
    /// The chunks a device holding `for_version` lacks, each distinct chunk once.
    pub chunks: Vec<BundledChunk>,
}

/// One chunk's payload in a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundledChunk {
    /// The chunk's hash (as the chunk index names it).
    pub hash: Digest,
    /// The window of a version the device holds that the payload is a delta against; `None`
    /// for a whole chunk.
    pub reference: Option<WindowRef>,
    /// How the payload is encoded.
    pub encoding: Encoding,
    /// Where the payload starts in the bundle.
    pub offset: u64,
    /// Its length.
    pub len: u32,
}

/// Why a file is not a bundle this build can read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading it failed.
    #[error("reading the bundle: {0}")]
    Io(#[from] io::Error),
    /// Not a bundle at all.
    #[error("not a Ferry bundle (no magic bytes at its start and end)")]
    NotABundle,
    /// Written by a newer build.
    #[error("bundle format {0}; this agent reads formats up to {FORMAT}")]
    TooNew(u16),
    /// Its layout is inconsistent (truncated, hostile offsets, an absurd header).
    #[error("damaged bundle: {0}")]
    Damaged(String),
}

/// The bytes a bundle starts with.
pub fn prefix() -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out
}

/// The bytes a bundle ends with: `header`, written at `header_offset` (where the payloads
/// ended), then the trailer.
pub fn tail(header: &BundleHeader, header_offset: u64) -> Result<Vec<u8>, BundleError> {
    let mut out = postcard::to_allocvec(header)
        .map_err(|e| BundleError::Damaged(format!("cannot encode the header: {e}")))?;
    let len = u32::try_from(out.len())
        .ok()
        .filter(|&l| u64::from(l) <= MAX_HEADER)
        .ok_or_else(|| BundleError::Damaged(format!("a {}-byte header", out.len())))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&header_offset.to_le_bytes());
    out.extend_from_slice(&MAGIC);
    Ok(out)
}

/// Reads and bounds the header of the bundle `file`: its magic bytes and format, a header
/// within [`MAX_HEADER`], at most [`MAX_BUILDS`] builds, and every payload inside the file
/// between its start and the header.
pub fn read_header(file: &mut (impl Read + Seek)) -> Result<BundleHeader, BundleError> {
    let size = file.seek(SeekFrom::End(0))?;
    if size < FIRST_OFFSET + TRAILER_LEN {
        return Err(BundleError::NotABundle);
    }
    let mut start = [0u8; FIRST_OFFSET as usize];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut start)?;
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.seek(SeekFrom::Start(size - TRAILER_LEN))?;
    file.read_exact(&mut trailer)?;
    if start[..8] != MAGIC || trailer[12..] != MAGIC {
        return Err(BundleError::NotABundle);
    }
    let format = u16::from_le_bytes([start[8], start[9]]);
    if format > FORMAT {
        return Err(BundleError::TooNew(format));
    }
    let len = u64::from(u32::from_le_bytes(le(&trailer[..4])));
    let at = u64::from_le_bytes(le(&trailer[4..12]));
    if len > MAX_HEADER || at < FIRST_OFFSET || at.checked_add(len) != Some(size - TRAILER_LEN) {
        return Err(BundleError::Damaged(format!(
            "a {len}-byte header at {at} in a {size}-byte file"
        )));
    }
    let mut bytes = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut bytes)?;
    let undecodable =
        |e: postcard::Error| BundleError::Damaged(format!("its header does not decode: {e}"));
    let header: BundleHeader = match format {
        1 => postcard::from_bytes::<HeaderV1>(&bytes)
            .map_err(undecodable)?
            .into(),
        _ => postcard::from_bytes(&bytes).map_err(undecodable)?,
    };
    if header.sealed_for.len() > MAX_SEALED_FOR {
        return Err(BundleError::Damaged(format!(
            "sealed for {} devices; at most {MAX_SEALED_FOR}",
            header.sealed_for.len()
        )));
    }
    if header.builds.len() > MAX_BUILDS {
        return Err(BundleError::Damaged(format!(
            "{} builds; at most {MAX_BUILDS}",
            header.builds.len()
        )));
    }
    for build in &header.builds {
        if build.index.len() as u64 > MAX_INDEX_BYTES {
            return Err(BundleError::Damaged("a chunk index over its bound".into()));
        }
        for chunk in &build.chunks {
            let end = chunk.offset.checked_add(u64::from(chunk.len));
            if chunk.offset < FIRST_OFFSET || end.is_none_or(|end| end > at) {
                return Err(BundleError::Damaged(format!(
                    "chunk {} lies outside the payloads",
                    chunk.hash
                )));
            }
        }
    }
    Ok(header)
}

fn le<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn header(chunks: Vec<BundledChunk>) -> BundleHeader {
        BundleHeader {
            model: "detector".parse().unwrap(),
            release: DesiredRelease {
                version: "2.0.0".parse().unwrap(),
                envelope: b"signed".to_vec(),
            },
            for_version: Some("1.0.0".parse().unwrap()),
            created_at: 1_800_000_000,
            trust: None,
            builds: vec![BundledBuild {
                file: Digest::of(b"file"),
                index: b"index".to_vec(),
                chunks,
            }],
            sealed_for: Vec::new(),
        }
    }

    fn bundle(payload: &[u8], chunks: Vec<BundledChunk>) -> Vec<u8> {
        let mut out = prefix();
        out.extend_from_slice(payload);
        let at = out.len() as u64;
        out.extend(tail(&header(chunks), at).unwrap());
        out
    }

    fn chunk(offset: u64, len: u32) -> BundledChunk {
        BundledChunk {
            hash: Digest::of(b"chunk"),
            reference: None,
            encoding: Encoding::Zstd,
            offset,
            len,
        }
    }

    #[test]
    fn a_bundle_reads_back_as_written() {
        let chunks = vec![chunk(FIRST_OFFSET, 5)];
        let bytes = bundle(b"hello", chunks.clone());
        let read = read_header(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!(read, header(chunks));
    }

    /// A format-1 bundle as 55061e9 wrote it (the header of [`header`], one 5-byte payload).
    const FORMAT_1: &str = "465259424e444c00010068656c6c6f086465746563746f7205322e302e30067369676e65640105312e302e3080a4a7da06000139aac93919e644bc384a2c14a24d6c8c4b57159cc1b54d2c469d79be97d1bf5105696e646578016b1d440ada61d0f4e4416c73bcbab3694f96875a3e5df3253075163ffe93cd4d00010a056f0000000f00000000000000465259424e444c00";

    #[test]
    fn a_format_1_bundle_still_reads() {
        let bytes = hex::decode(FORMAT_1).unwrap();
        let read = read_header(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!(read, header(vec![chunk(FIRST_OFFSET, 5)]));
    }

    #[test]
    fn damaged_and_hostile_bundles_are_refused_with_a_reason() {
        let good = bundle(b"hello", vec![chunk(FIRST_OFFSET, 5)]);
        let refused = |bytes: &[u8]| read_header(&mut Cursor::new(bytes)).unwrap_err();
        assert!(matches!(refused(b"short"), BundleError::NotABundle));
        assert!(matches!(
            refused(&good[..good.len() - 1]),
            BundleError::NotABundle
        ));
        let mut newer = good.clone();
        newer[8] = 9;
        assert!(matches!(refused(&newer), BundleError::TooNew(9)));
        // A payload that runs into the header, or starts before the payloads.
        for bad in [chunk(FIRST_OFFSET, 6), chunk(0, 1), chunk(u64::MAX, 2)] {
            let bytes = bundle(b"hello", vec![bad]);
            assert!(
                matches!(refused(&bytes), BundleError::Damaged(_)),
                "{bad:?}"
            );
        }
        // A trailer pointing anywhere.
        let mut lying = good.clone();
        let n = lying.len();
        lying[n - 16..n - 8].copy_from_slice(&3u64.to_le_bytes());
        assert!(matches!(refused(&lying), BundleError::Damaged(_)));
        let mut huge = good;
        let n = huge.len();
        huge[n - 20..n - 16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(refused(&huge), BundleError::Damaged(_)));
    }
}
