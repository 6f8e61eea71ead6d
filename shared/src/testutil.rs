//! Test helpers: deterministic data and small chunk bounds, for this crate's unit tests and
//! (behind the `test-util` feature) those of the crates built on it.

use crate::chunk::ChunkParams;

/// Small FastCDC bounds (2 KiB / 8 KiB / 32 KiB), so tests cut many chunks from little data.
pub const SMALL: ChunkParams = ChunkParams {
    min: 2048,
    avg: 8192,
    max: 32768,
};

/// Deterministic pseudo-random bytes (xorshift).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `old` as a rebuilt native library: `inserted` spliced in at `at`, and a 4-byte
/// little-endian address every 48 bytes (from byte 64 on) moved by the insertion's length.
pub fn rebuilt(old: &[u8], at: usize, inserted: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    new.splice(at..at, inserted.iter().copied());
    for at in (64..new.len().saturating_sub(4)).step_by(48) {
        let mut word = [0u8; 4];
        word.copy_from_slice(&new[at..at + 4]);
        let moved = u32::from_le_bytes(word).wrapping_add(inserted.len() as u32);
        new[at..at + 4].copy_from_slice(&moved.to_le_bytes());
    }
    new
}

/// A safetensors file holding `tensors` (name, dtype, bytes) in order, with `metadata`.
pub fn safetensors(metadata: &[(&str, &str)], tensors: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut at = 0usize;
    for (name, dtype, bytes) in tensors {
        header.insert(
            (*name).into(),
            serde_json::json!({"dtype": dtype, "shape": [bytes.len()], "data_offsets": [at, at + bytes.len()]}),
        );
        at += bytes.len();
    }
    let metadata: serde_json::Map<String, serde_json::Value> = metadata
        .iter()
        .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
        .collect();
    header.insert("__metadata__".into(), metadata.into());
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(&header);
    for (_, _, bytes) in tensors {
        file.extend_from_slice(bytes);
    }
    file
}

/// A valid release of `name` `version` for tests: one platform-independent build whose hash
/// derives from the version, revision 1, valid until 2033, no lineage.
pub fn release(name: &str, version: &str) -> crate::Release {
    use crate::manifest::{Accelerator, Lineage, MANIFEST_SCHEMA, Target, Variant};
    let parse_error = |what: &str| -> ! { panic!("test fixture: {what} does not parse") };
    crate::Release {
        schema: MANIFEST_SCHEMA,
        name: name.parse().unwrap_or_else(|_| parse_error(name)),
        version: version.parse().unwrap_or_else(|_| parse_error(version)),
        revision: 1,
        expires: 2_000_000_000,
        created_at: 1_000,
        created_by: "ci".into(),
        variants: vec![Variant {
            target: Target::Any,
            accelerator: Accelerator::Any,
            file_name: "model.bin"
                .parse()
                .unwrap_or_else(|_| parse_error("model.bin")),
            size: 1,
            hash: crate::Digest::of(version.as_bytes()),
            chunks: crate::Digest::of(b"index"),
            kind: Default::default(),
            requires: Vec::new(),
        }],
        cpu_fallback: false,
        metadata: Lineage::default(),
    }
}
