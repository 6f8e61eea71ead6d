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

/// Resident KiB per mapped file (and `[anon]` for the rest) of a process, largest first, from
/// `/proc/PID/smaps`: where a process's RSS lives.
pub fn rss_by_mapping(pid: u32) -> Result<Vec<(String, u64)>> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .with_context(|| format!("process {pid} is gone"))?;
    let mut by: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut current = String::from("[anon]");
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // An address range opens a mapping; its sixth column, if any, names it.
            current = words.nth(4).map_or("[anon]", |p| p).to_owned();
        } else if first == "Rss:" {
            let kib: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *by.entry(current.clone()).or_default() += kib;
        }
    }
    let mut out: Vec<(String, u64)> = by.into_iter().filter(|(_, k)| *k > 0).collect();
    out.sort_by_key(|(_, k)| std::cmp::Reverse(*k));
    Ok(out)
}
