//! Chunk locations: where an agent may fetch chunk frames other than from a coordinator (the
//! mirrors configured in `[mirrors]`, and pre-signed addresses of the frames in an S3
//! bucket). A coordinator hands these out; it never vouches for them: the agent checks every
//! chunk against the signed chunk index.

use std::time::Duration;

use ferry_shared::chunk::ChunkIndex;
use ferry_shared::wire::{FetchResponse, SignedLocation};

use crate::app::{Coordinator, Counters};

/// The locations of chunks `ordinals` of the artifact cut as `index` (ordinals past its end
/// are left out).
pub(crate) fn locations(app: &Coordinator, index: &ChunkIndex, ordinals: &[u32]) -> FetchResponse {
    let settings = &app.config.mirrors;
    let mut signed = Vec::new();
    if settings.presign {
        let valid_for = Duration::from_secs(settings.presign_secs);
        for &ordinal in ordinals {
            let Some(chunk) = index.chunks.get(ordinal as usize) else {
                continue;
            };
            if let Some(url) = app.transfer.chunks.presigned(&chunk.hash, valid_for) {
                signed.push(SignedLocation { ordinal, url });
            }
        }
    }
    Counters::add(&app.counters.chunks_presigned, signed.len() as u64);
    FetchResponse::Locations {
        mirrors: settings.urls.clone(),
        signed,
    }
}
