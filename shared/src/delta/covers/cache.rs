//! A small cache of suffix indexes, so that the chunks encoded against one window (two
//! workers often ask for the same one at once) sort its suffixes once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use super::SuffixIndex;

type Slot = Arc<OnceLock<Arc<SuffixIndex>>>;

/// The suffix indexes of the last `capacity` windows, by key (what names a window: an
/// artifact digest and a byte range, say). Memory: four bytes per window byte per entry.
pub struct SuffixCache<K> {
    capacity: usize,
    slots: Mutex<VecDeque<(K, Slot)>>,
}

impl<K: PartialEq> SuffixCache<K> {
    /// A cache holding at most `capacity` indexes (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            slots: Mutex::new(VecDeque::new()),
        }
    }

    /// The index of `window`, known by `key`: cached, or built now. Callers asking for a key
    /// that is being built wait for it rather than build it again.
    pub fn get_or_build(&self, key: K, window: &[u8]) -> Arc<SuffixIndex> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let found = slots.iter().position(|(k, _)| *k == key);
            match found.and_then(|i| slots.remove(i)) {
                Some(entry) => {
                    // Most recently used last.
                    let slot = entry.1.clone();
                    slots.push_back(entry);
                    slot
                }
                None => {
                    if slots.len() >= self.capacity {
                        slots.pop_front();
                    }
                    let slot = Slot::default();
                    slots.push_back((key, slot.clone()));
                    slot
                }
            }
        };
        slot.get_or_init(|| Arc::new(SuffixIndex::build(window)))
            .clone()
    }

    /// How many indexes the cache holds (built or being built).
    pub fn held(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Drops every index (those in use live on until their users let go).
    pub fn clear(&self) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_sorted_once_and_the_oldest_is_evicted() {
        let cache = SuffixCache::new(2);
        let a = cache.get_or_build(1, b"banana");
        assert!(Arc::ptr_eq(&a, &cache.get_or_build(1, b"banana")));
        cache.get_or_build(2, b"apple");
        cache.get_or_build(3, b"cherry");
        let again = cache.get_or_build(1, b"banana");
        assert!(!Arc::ptr_eq(&a, &again));
        cache.clear();
        assert!(!Arc::ptr_eq(&again, &cache.get_or_build(1, b"banana")));
    }
}
