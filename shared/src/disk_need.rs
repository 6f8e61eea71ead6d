//! What installing a variant takes on a device's disk, one rule for both sides: the agent
//! refuses a download that cannot fit, and the coordinator lists, before a rollout starts,
//! the devices whose last reported free space will make them refuse.
//!
//! A version is written whole beside the ones kept (the previous stays for rollback), so
//! chunks a device reuses save the network, not the disk: the need is the file's size (twice
//! for a directory artifact, unpacked beside its archive), plus its chunk index and envelope
//! (a thousandth of it, and a margin).

use crate::manifest::{ArtifactKind, Variant};

/// What a download needs on top of its artifact: the chunk index, the envelope and the
/// state file's growth, with a margin.
pub const DOWNLOAD_MARGIN: u64 = 256 * 1024;

/// Bytes of the artifact itself on disk once installed: the file, and for a directory
/// artifact its unpacked tree (about as much again).
pub fn artifact_bytes(variant: &Variant) -> u64 {
    match variant.kind {
        ArtifactKind::File => variant.size,
        ArtifactKind::Directory => variant.size.saturating_mul(2),
    }
}

/// Bytes still needed to install `variant` when `staged` of them are already on disk.
pub fn install_need(variant: &Variant, staged: u64) -> u64 {
    let size = artifact_bytes(variant);
    size.saturating_sub(staged)
        .saturating_add(size / 1024)
        .saturating_add(DOWNLOAD_MARGIN)
}

/// How many bytes are missing to install `variant` with `staged` bytes of it already on disk
/// and `free` bytes free; `None` when it fits.
pub fn shortfall(variant: &Variant, staged: u64, free: u64) -> Option<u64> {
    let needed = install_need(variant, staged);
    (needed > free).then(|| needed - free)
}

/// `bytes` for people: `12.0 MiB`, `3.4 GiB`.
pub fn human(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let b = bytes as f64;
    if b >= 1024.0 * MIB {
        format!("{:.1} GiB", b / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", b / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_needs_its_tree_too_and_staged_bytes_count() {
        let mut v = crate::manifest::tests::sample().variants[0].clone();
        v.size = 100 << 20;
        assert_eq!(
            install_need(&v, 0),
            (100 << 20) + (100 << 10) + DOWNLOAD_MARGIN
        );
        assert_eq!(shortfall(&v, 0, 200 << 20), None);
        assert_eq!(
            shortfall(&v, 0, 100 << 20),
            Some((100 << 10) + DOWNLOAD_MARGIN)
        );
        assert_eq!(
            shortfall(&v, 60 << 20, 100 << 20),
            None,
            "60 MiB already there"
        );
        v.kind = ArtifactKind::Directory;
        assert_eq!(artifact_bytes(&v), 200 << 20);
        assert!(shortfall(&v, 0, 200 << 20).is_some());
        v.size = u64::MAX;
        assert_eq!(install_need(&v, 0), u64::MAX, "saturates, never wraps");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(human(12 << 20), "12.0 MiB");
    }
}
