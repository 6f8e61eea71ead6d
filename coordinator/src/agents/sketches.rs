//! Sketches of stored chunks (their content anchors, see [`ferry_shared::delta::Sketch`]),
//! kept while chunks are served (until serving goes quiet, see
//! [`crate::agents::transfer::Transfer::trim_if_idle`]): whether a changed chunk has anything in
//! common with its
//! window is asked of the sketches of the window's chunks, so a chunk that shares nothing
//! skips reading its window (8 MiB, read, checked and decompressed per chunk) as well as the
//! screen. A source chunk lies under the windows of about eight changed chunks, and is
//! sketched once for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_shared::Digest;
use ferry_shared::delta::Sketch;

/// Sketches by chunk hash, bounded by the memory they hold; the least recently used go
/// first.
pub(crate) struct SketchCache {
    inner: Mutex<Inner>,
    budget: usize,
}

#[derive(Default)]
struct Inner {
    sketches: HashMap<Digest, (Arc<Sketch>, u64)>,
    /// Incremented at every use: the order of last use.
    clock: u64,
    bytes: usize,
}

impl SketchCache {
    /// A cache holding at most about `budget` bytes of sketches.
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            inner: Mutex::default(),
            budget,
        }
    }

    /// The sketch of chunk `hash`, built by `build` (outside the lock) when not held.
    pub(crate) fn get_or_build<E>(
        &self,
        hash: Digest,
        build: impl FnOnce() -> Result<Sketch, E>,
    ) -> Result<Arc<Sketch>, E> {
        if let Some(sketch) = self.lock().touch(&hash) {
            return Ok(sketch);
        }
        let sketch = Arc::new(build()?);
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        inner.bytes += sketch.heap_bytes();
        if let Some((old, _)) = inner.sketches.insert(hash, (sketch.clone(), clock)) {
            inner.bytes -= old.heap_bytes();
        }
        if inner.bytes > self.budget {
            inner.evict_to(self.budget / 4 * 3);
        }
        Ok(sketch)
    }

    /// Drops every sketch (the encoder is idle).
    pub(crate) fn clear(&self) {
        *self.lock() = Inner::default();
    }

    /// Bytes of sketches held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn touch(&mut self, hash: &Digest) -> Option<Arc<Sketch>> {
        self.clock += 1;
        let clock = self.clock;
        let (sketch, used) = self.sketches.get_mut(hash)?;
        *used = clock;
        Some(sketch.clone())
    }

    /// Drops the least recently used sketches until at most `target` bytes are held.
    fn evict_to(&mut self, target: usize) {
        let mut by_age: Vec<(u64, Digest)> = self
            .sketches
            .iter()
            .map(|(h, (_, used))| (*used, *h))
            .collect();
        by_age.sort_unstable();
        for (_, hash) in by_age {
            if self.bytes <= target {
                break;
            }
            if let Some((sketch, _)) = self.sketches.remove(&hash) {
                self.bytes -= sketch.heap_bytes();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::testutil::noise;

    #[test]
    fn the_cache_stays_within_its_budget_and_keeps_what_was_used_last() {
        let pieces: Vec<Vec<u8>> = (0..8).map(|i| noise(40 + i, 256 * 1024)).collect();
        let one = Sketch::of(&pieces[0]).heap_bytes();
        let cache = SketchCache::new(one * 4);
        let mut builds = 0;
        for (i, piece) in pieces.iter().enumerate() {
            let hash = Digest::of(piece);
            cache
                .get_or_build(hash, || {
                    builds += 1;
                    Ok::<_, std::convert::Infallible>(Sketch::of(piece))
                })
                .unwrap();
            // The first piece, used again each time, is never the oldest.
            if i > 0 {
                cache
                    .get_or_build(Digest::of(&pieces[0]), || -> Result<Sketch, ()> {
                        panic!("the most recently used sketch was dropped")
                    })
                    .unwrap();
            }
            assert!(cache.bytes() <= one * 4 + one / 8, "{}", cache.bytes());
        }
        assert_eq!(builds, 8);
        cache.clear();
        assert_eq!(cache.bytes(), 0);
    }
}
