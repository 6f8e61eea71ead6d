//! Window planning: which bytes a chunk is encoded against. A changed chunk's window is a
//! bounded stretch of a version the device holds, placed around where the chunk's old bytes
//! are estimated to be (`around`, used by [`crate::plan::plan`]); a chunk of a first
//! install is encoded against the new file's own bytes just before it ([`install_window`]).
//! Windows are bounded ([`WINDOW`]), so encoder and decoder memory follow the window, not the
//! artifact.

use crate::digest::Digest;
use crate::wire::WindowRef;

/// The window size agents plan with (and the coordinator precomputes for): 8 MiB, measured
/// by the transfer benchmark as the point past which larger windows stop paying.
pub const WINDOW: u64 = 8 * 1024 * 1024;

/// The window a chunk fetched without one is encoded against on a first install: up to
/// `window_max` bytes of the target itself just before the chunk at `offset`, which the
/// device has written by the time the chunk arrives (chunks are asked for and applied in file
/// order), in the file whose whole-file hash is `file`; `None` for the first chunk. zstd
/// over the whole file finds its matches in the same 8 MiB behind each byte; chunks
/// compressed alone start from nothing every megabyte.
pub fn install_window(file: Digest, offset: u64, window_max: u64) -> Option<WindowRef> {
    let len = offset.min(window_max);
    (len > 0).then(|| WindowRef {
        file,
        offset: offset - len,
        len,
        at: len,
    })
}

/// A window of at most `window_max` bytes around `[position, position + len)`, centred to
/// within an eighth of the window, clamped to the source; `None` when the source is empty.
pub(crate) fn around(
    position: u64,
    len: u32,
    source_len: u64,
    window_max: u64,
) -> Option<(u64, u64)> {
    if source_len == 0 || window_max == 0 {
        return None;
    }
    let want = window_max.min(source_len);
    let slack = want.saturating_sub(u64::from(len)) / 2;
    let centred = position.saturating_sub(slack);
    // Snapped to a quarter-window grid where the slack allows, so neighbouring chunks name
    // the same window and the encoder sorts its suffixes once for them (a quarter: 2 % less
    // encode CPU than a half-window grid on the native pair, and 1.8 % fewer bytes).
    let grid = want / 4;
    let start = if grid > 0 && slack >= grid / 2 {
        centred.saturating_add(grid / 2) / grid * grid
    } else {
        centred
    };
    Some((start.min(source_len - want), want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_install_window_is_the_bytes_just_before_the_chunk() {
        let file = Digest::of(b"new");
        let range = |offset| install_window(file, offset, WINDOW).map(|w| (w.offset, w.len));
        assert_eq!(range(0), None);
        assert_eq!(range(100), Some((0, 100)));
        assert_eq!(range(WINDOW + 5), Some((5, WINDOW)));
        assert_eq!(range(u64::MAX), Some((u64::MAX - WINDOW, WINDOW)));
        assert_eq!(install_window(file, 7, 0), None);
        // The chunk follows the window, in the file itself.
        let w = install_window(file, 100, WINDOW).unwrap();
        assert_eq!((w.file, w.at), (file, w.len));
    }

    #[test]
    fn windows_never_leave_their_source_and_respect_the_bound() {
        for (position, len, source_len, max) in [
            (0u64, 100u32, 50u64, 1000u64),
            (10_000, 5000, 8000, 4096),
            (u64::MAX - 10, 10, 1 << 20, 1 << 16),
            (500, 10, 1000, 0),
        ] {
            if let Some((start, wlen)) = around(position, len, source_len, max) {
                assert!(
                    wlen <= max && start + wlen <= source_len,
                    "{position} {len} {source_len} {max}"
                );
            }
        }
        assert_eq!(around(0, 1, 0, 10), None);
    }

    #[test]
    fn neighbouring_chunks_share_a_window_that_holds_them() {
        const MIB: u64 = 1 << 20;
        let source = 64 * MIB;
        let windows: Vec<_> = (0..16u64)
            .map(|i| {
                let position = 20 * MIB + i * MIB / 2;
                let window = around(position, (MIB / 2) as u32, source, 8 * MIB);
                let (start, len) = window.unwrap_or_default();
                assert!(start <= position && position + MIB / 2 <= start + len);
                assert!(
                    start + MIB <= position,
                    "a megabyte of slack before {position}"
                );
                (start, len)
            })
            .collect();
        let mut distinct = windows.clone();
        distinct.dedup();
        assert!(
            distinct.len() <= 5,
            "{} windows for 16 chunks",
            distinct.len()
        );
        assert_eq!(
            around(u64::MAX - 1, 1, u64::MAX, 8 * MIB).map(|w| w.1),
            Some(8 * MIB)
        );
    }
}
