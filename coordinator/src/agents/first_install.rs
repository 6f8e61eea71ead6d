//! First installs: a device that holds no version of an artifact asks for each chunk against
//! the bytes just before it in the same file ([`ferry_shared::delta::window::install_window`]),
//! which it has written
//! by then. Such a chunk is served from the delta cache when the warmer has encoded it there
//! (zstd at the delta level with those bytes as prefix: about what zstd over the whole file
//! sends, where the stored chunks, compressed alone at the store level, send 15-20 % more),
//! else as the stored chunk. It is never encoded while a device waits: with an 8 MiB prefix,
//! level 19 costs about 3.7 times zstd -19's CPU per byte. The warmer encodes a release's
//! first install when an alias that devices follow, or a rollout, targets it; one chunk at a
//! time, so that only one set of its large match tables (48 MiB) is held at once, and giving
//! way to the next alias move between chunks (see [`crate::agents::warm::warm_on_alias_moves`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ferry_shared::chunk::{ChunkIndex, ChunkRef};
use ferry_shared::delta::{Encoded, Encoding, encode_after_own_prefix};
use ferry_shared::wire::{WindowRef, decodes};

use crate::agents::transfer::{ServeError, Transfer, blocking, read_window};
use crate::store::deltas::DeltaKey;

/// A stored chunk whose frame is at least this share of its bytes (in percent) is not worth
/// a level-19 encode: incompressible data stays so with any prefix.
const INCOMPRESSIBLE_PERCENT: u64 = 97;

impl Transfer {
    /// `chunk`, asked for against `window`, a window of its own file: the warmer's encoding
    /// when there is one the device decodes, else the stored chunk.
    pub(crate) async fn own_window_chunk(
        self: &Arc<Self>,
        chunk: ChunkRef,
        window: WindowRef,
        protocol: u16,
    ) -> Result<Encoded, ServeError> {
        let this = self.clone();
        let key = DeltaKey {
            chunk: chunk.hash,
            window,
        };
        blocking(move || match this.cached(&key, &chunk)? {
            Some(hit) if decodes(protocol, hit.encoding) => Ok(hit),
            _ => this.plain(&chunk),
        })
        .await
    }

    /// Encodes chunk `chunk` of the artifact cut as `index` against `window` (bytes of the
    /// same artifact before it) into the cache, unless it is there or incompressible; true
    /// when it encoded. Waits for an encode worker.
    pub(crate) async fn warm_own_window(
        self: &Arc<Self>,
        index: Arc<ChunkIndex>,
        chunk: ChunkRef,
        window: WindowRef,
    ) -> Result<bool, ServeError> {
        let permit = self.encode_permit().await?;
        let this = self.clone();
        blocking(move || {
            let _permit = permit;
            let key = DeltaKey {
                chunk: chunk.hash,
                window,
            };
            // Neither is read: a release of incompressible bytes costs the warmer no I/O.
            if this.deltas.contains(&key) {
                return Ok(false);
            }
            let frame = this.chunks.frame_len(&chunk.hash)?;
            if frame * 100 >= u64::from(chunk.len) * INCOMPRESSIBLE_PERCENT {
                return Ok(false);
            }
            let stored = this.chunks.read(&chunk.hash, chunk.len)?;
            let prefix = read_window(&this.chunks, &index, window.offset, window.len)?;
            let encoded = encode_after_own_prefix(&stored.bytes, &prefix, this.level())
                .map_err(|e| ServeError::Task(format!("first-install encode: {e}")))?;
            let plain = Encoded {
                encoding: Encoding::Zstd,
                payload: stored.compressed,
            };
            this.cache_answer(&key, Some(encoded), plain, "first-install chunk");
            this.first_install_encoded.fetch_add(1, Ordering::Relaxed);
            Ok(true)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chunks::ChunkStore;
    use crate::store::deltas::DeltaCache;
    use ferry_shared::chunk::ChunkParams;
    use ferry_shared::delta::window::{WINDOW, install_window};
    use ferry_shared::delta::{Encoding, Limits, decode_in_window};
    use ferry_shared::testutil::noise;

    /// A file that repeats one block with small changes, then ends in noise: each chunk but
    /// the first compresses against the bytes before it, except the noise.
    fn file() -> Vec<u8> {
        let block: Vec<u8> = noise(5, 40_000).iter().map(|b| b % 16).collect();
        let mut data = Vec::new();
        for k in 0..12u8 {
            let mut copy = block.clone();
            for b in copy.iter_mut().skip(usize::from(k) * 31).step_by(3000) {
                *b ^= k | 0x20;
            }
            data.extend(copy);
        }
        data.extend(noise(6, 120_000));
        data
    }

    #[test]
    fn a_first_install_chunk_goes_stored_until_warmed_then_against_the_bytes_before_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkStore::new(dir.path().join("chunks"), 9).unwrap();
        let deltas = DeltaCache::new(dir.path().join("deltas")).unwrap();
        let transfer = Arc::new(Transfer::new(chunks, deltas, 19, 1));
        let data = file();
        let params = ChunkParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        };
        let ingest = transfer.chunks.ingest();
        let cut = ChunkIndex::build_visiting(data.as_slice(), params, |c, b| {
            ingest.put(&c.hash, b).map_err(|e| e.to_string())
        })
        .unwrap();
        ingest.finish().unwrap();
        let index = Arc::new(cut.index);
        let spans: Vec<(u64, ChunkRef)> = index.spans().map(|(o, c)| (o, *c)).collect();
        assert!(spans.len() >= 6, "{} chunks", spans.len());
        assert_eq!(
            install_window(cut.hash, 0, WINDOW),
            None,
            "the first chunk has nothing before it"
        );
        let serve = |chunk: ChunkRef, window: WindowRef| {
            runtime
                .block_on(transfer.own_window_chunk(
                    chunk,
                    window,
                    ferry_shared::wire::PROTOCOL_VERSION,
                ))
                .unwrap()
        };

        let (mut against_before, mut incompressible) = (0, 0);
        for &(offset, chunk) in &spans[1..] {
            let window = install_window(cut.hash, offset, WINDOW).unwrap();
            assert_eq!(
                serve(chunk, window).encoding,
                Encoding::Zstd,
                "not warmed yet"
            );
            let warmed = runtime
                .block_on(transfer.warm_own_window(index.clone(), chunk, window))
                .unwrap();
            let again = runtime
                .block_on(transfer.warm_own_window(index.clone(), chunk, window))
                .unwrap();
            assert!(!again, "encoded once");
            let served = serve(chunk, window);
            let bytes = &data[offset as usize..(offset + u64::from(chunk.len)) as usize];
            if !warmed {
                incompressible += 1;
                assert_eq!(served.encoding, Encoding::Zstd);
                continue;
            }
            assert_eq!(served.encoding, Encoding::ZstdRef);
            let prefix = &data[window.offset as usize..(window.offset + window.len) as usize];
            let decoded = decode_in_window(
                served.encoding,
                &served.payload,
                Some((prefix, window.len as usize)),
                bytes.len(),
                &Limits::DEFAULT,
            )
            .unwrap();
            assert_eq!(decoded, bytes);
            let stored = transfer.chunks.read_frame(&chunk.hash, chunk.len).unwrap();
            assert!(
                served.payload.len() * 4 < stored.len(),
                "a repeat costs little"
            );
            against_before += 1;
        }
        assert!(against_before >= 4, "{against_before}");
        assert!(incompressible >= 1, "the noise is not encoded");
        assert_eq!(
            transfer.first_install_encoded.load(Ordering::Relaxed),
            against_before
        );
        assert_eq!(
            transfer.encoded.load(Ordering::Relaxed),
            0,
            "no delta counted"
        );
    }
}
