//! Keeping the agent's idle footprint small after installs.
//!
//! An install allocates megabytes for a while (the zstd window, network buffers) and frees
//! them. So at start the agent tunes glibc's allocator to give large blocks back
//! ([`ferry_shared::allocator`]), and after each install it trims the arenas. When an install
//! cycle ends, the agent also pages out its own code ([`page_out_own_code`]): most of its
//! idle RSS was code that only installs run.

/// One arena for every thread: chunk decoding runs on tokio's blocking threads, and the
/// agent's threads seldom allocate at the same time, so the shared lock costs nothing.
const ARENAS: u8 = 1;

/// Makes large allocations return to the OS when freed (see [`ferry_shared::allocator`]).
/// Call once, early, before other threads start.
pub fn configure_allocator() {
    ferry_shared::allocator::configure(ARENAS);
}

pub use ferry_shared::allocator::release_freed_memory;

/// Hands the kernel back the resident pages of the agent's own executable once an install
/// cycle is over (Linux 5.4+; a no-op elsewhere, and where the kernel refuses).
///
/// Installing runs code the idle agent never needs again until the next update: chunk
/// decoders, bsdiff, hashing, the switch and its health check. Those clean, file-backed pages
/// stay mapped, and counted in the agent's RSS, until memory runs short. Measured with the
/// `device` profile: 4.1–4.4 MiB of the agent's idle RSS were such pages. Paging them out
/// leaves the memory to the device's model server now; the next update faults the code
/// back in from the binary, a few milliseconds of reads.
#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "FFI call to madvise(2) on the executable's own mappings; see the SAFETY note"
)]
pub fn page_out_own_code() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        // `start-end perms offset dev inode path`
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms), Some(path)) = (fields.next(), fields.next(), fields.nth(3))
        else {
            continue;
        };
        if perms.contains('w') || std::path::Path::new(path) != exe {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: `start..end` is a whole mapping of this process's own executable, as the
        // kernel lists it, so it is page-aligned and mapped. It is not writable, so it holds
        // no data the program changes. MADV_PAGEOUT only asks the kernel to reclaim the pages;
        // their contents stay what they were (clean file pages are read back from the binary
        // on the next access), so no memory the program can observe changes and no reference
        // into it is invalidated. Failure (an older kernel's EINVAL) changes nothing.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT);
        }
    }
}

/// Hands back the executable's pages (Linux only; a no-op elsewhere).
#[cfg(not(target_os = "linux"))]
pub fn page_out_own_code() {}

/// Called when an install cycle is over (confirmed or rolled back): freed heap and the code
/// only installs run go back to the device.
pub fn settle_after_install() {
    release_freed_memory();
    page_out_own_code();
}
