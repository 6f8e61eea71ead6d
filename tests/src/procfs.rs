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

/// CPU time (user + system, all threads) this process has used so far, from
/// `/proc/self/stat`, whose clock ticks are `USER_HZ`: 100 per second on every Linux ABI.
pub fn own_cpu_time() -> Result<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("no /proc/self/stat")?;
    // Fields after the parenthesised command name, which may itself hold spaces.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("field {} of /proc/self/stat", i + 3))
    };
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    let total = ticks(11)? + ticks(12)?;
    Ok(std::time::Duration::from_millis(total * 10))
}
