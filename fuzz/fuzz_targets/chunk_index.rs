//! Chunk indexes on hostile bytes: accepted only when they describe the declared size.
#![no_main]

use ferry_shared::chunk::ChunkIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, c, d, rest @ ..] = data else {
        return;
    };
    let size = u64::from(u32::from_be_bytes([*a, *b, *c, *d]));
    if let Ok(index) = ChunkIndex::from_canonical_bytes(rest, size) {
        assert_eq!(index.total_len(), size);
    }
});
