//! Writeback hints: asking the kernel to start writing a file's dirty pages to disk now, so
//! that a later fsync has little left to wait for.

use std::fs::File;

/// Starts writing `len` bytes of `file` from `offset` back to disk without waiting for them,
/// so the fsync that ends a batch of writes (an install, a publish) finds little left to do:
/// the disk writes while the network delivers. Advisory: an error is ignored here, and the fsync
/// reports any that
/// matters.
#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "FFI call to sync_file_range(2) on a borrowed descriptor; see the SAFETY note"
)]
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range reads and writes no memory of this process; the descriptor is
    // valid for the whole call because `file` is borrowed for it; any offset and length are
    // accepted (out-of-range ones fail with -1, which is ignored).
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Starts writing `len` bytes of `file` from `offset` back to disk (a no-op off Linux: the
/// final fsync does all of it).
#[cfg(not(target_os = "linux"))]
pub fn start_writeback(_file: &File, _offset: u64, _len: u64) {}
