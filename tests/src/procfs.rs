//! Memory figures of running processes, from `/proc/PID/status` (Linux).

use anyhow::{Context, Result};

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, `RssAnon`, …), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}
