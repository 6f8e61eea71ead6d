//! The glibc allocator tuned for long-running processes that allocate large blocks for a
//! while and free them (an agent installing, a coordinator encoding deltas).
//!
//! glibc keeps freed memory: after the first large block is freed it raises its mmap
//! threshold, so later large blocks come from the allocating thread's arena, and freed memory
//! at the top of a thread arena is never returned, not even by `malloc_trim`; every new
//! thread (tokio's blocking pool) gets an arena of its own. Measured: an agent that had
//! installed a few 4 MiB versions idled with 5 MiB of anonymous memory instead of under 1; a
//! coordinator peaked at 277 MiB instead of 177 through a 1 GiB delta update, and held 62 MiB
//! instead of 30 after a whole install. So processes fix the mmap threshold at start (large
//! blocks are then always mapped and unmapped) and cap the arenas. musl's allocator returns
//! memory on its own, and other platforms need nothing here.

/// Blocks at least this large are mapped on their own and returned to the OS when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

/// Makes large allocations return to the OS when freed, and lets at most `arenas` arenas
/// serve all threads (glibc only; a no-op elsewhere). Call once, early, before other threads
/// start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(
    unsafe_code,
    reason = "FFI call to glibc's mallopt; see the SAFETY note"
)]
pub fn configure(arenas: u8) {
    // SAFETY: mallopt(3) takes the allocator's own locks and has no memory-safety
    // preconditions; M_MMAP_THRESHOLD accepts any value up to HEAP_MAX/2 (32 MiB on 64-bit,
    // 512 KiB on 32-bit) and 256 KiB is within both; M_ARENA_MAX accepts any positive count.
    // Setting them only changes where future blocks come from. The return values only report
    // whether a value was accepted.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, libc::c_int::from(arenas.max(1)));
    }
}

/// Makes large allocations return to the OS when freed (glibc only; a no-op elsewhere).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure(_arenas: u8) {}

/// Returns freed heap pages to the operating system (glibc only; a no-op elsewhere).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(
    unsafe_code,
    reason = "FFI call to glibc's malloc_trim; see the SAFETY note"
)]
pub fn release_freed_memory() {
    // SAFETY: malloc_trim(3) has no preconditions: it takes each arena's lock itself, releases
    // only pages that hold no live allocation, and may be called from any thread at any time.
    // Its argument is a byte count of padding to keep; 0 is valid. The return value only says
    // whether anything was released.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns freed heap pages to the operating system (glibc only; a no-op elsewhere).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed_memory() {}
