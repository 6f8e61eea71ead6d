//! The coordinator process's own figures, as Prometheus's standard `process_*` collector
//! reports them (CPU seconds, resident and virtual memory, open and maximum file
//! descriptors, start time), read from Linux's `/proc/self`. Parsing is pure; [`read`] is the
//! edge. Elsewhere, or when a file cannot be read, the figure is left out.

/// What `/proc/self` says of this process.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ProcessFigures {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: Option<u64>,
    /// File descriptors open.
    pub open_fds: Option<u64>,
    /// The soft limit on file descriptors.
    pub max_fds: Option<u64>,
    /// When the process started (Unix seconds).
    pub start_time_seconds: Option<f64>,
}

/// Clock ticks per second in `/proc/*/stat` (`USER_HZ`: 100 on every Linux architecture).
const USER_HZ: f64 = 100.0;

/// Reads the figures of this process.
pub(crate) fn read() -> ProcessFigures {
    let text = |path: &str| std::fs::read_to_string(path).ok();
    let stat = text("/proc/self/stat");
    let status = text("/proc/self/status");
    let boot = text("/proc/stat").as_deref().and_then(boot_time);
    let fields = stat.as_deref().and_then(stat_fields);
    let kib = |key| {
        status
            .as_deref()
            .and_then(|s| status_kib(s, key))
            .map(|k| k * 1024)
    };
    ProcessFigures {
        cpu_seconds: fields
            .as_ref()
            .map(|f| (f.utime + f.stime) as f64 / USER_HZ),
        resident_bytes: kib("VmRSS:"),
        virtual_bytes: kib("VmSize:"),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
        max_fds: text("/proc/self/limits")
            .as_deref()
            .and_then(max_open_files),
        start_time_seconds: match (boot, &fields) {
            (Some(boot), Some(f)) => Some(boot as f64 + f.start_ticks as f64 / USER_HZ),
            _ => None,
        },
    }
}

/// A `/proc/self/status` figure in KiB (`VmRSS:   1234 kB`), whatever the page size.
fn status_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The fields of `/proc/self/stat` used here.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StatFields {
    utime: u64,
    stime: u64,
    start_ticks: u64,
}

/// Parses `/proc/self/stat`: fields after the command name (which may hold spaces and
/// parentheses, so the split is at its last `)`).
fn stat_fields(text: &str) -> Option<StatFields> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(StatFields {
        utime: field(14)?,
        stime: field(15)?,
        start_ticks: field(22)?,
    })
}

/// The boot time (Unix seconds) from `/proc/stat`'s `btime` line.
fn boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (ferry (co) ord) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 98765 1234567890 3000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            stat_fields(stat),
            Some(StatFields {
                utime: 250,
                stime: 50,
                start_ticks: 98765,
            })
        );
        assert_eq!(stat_fields("garbage"), None);
    }

    #[test]
    fn boot_time_and_the_open_files_limit_are_read_from_their_lines() {
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1765000000\nprocesses 9\n"),
            Some(1_765_000_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(max_open_files("nothing"), None);
        assert_eq!(
            status_kib("Name:\tferry\nVmRSS:\t   5120 kB\n", "VmRSS:"),
            Some(5120)
        );
    }

    #[test]
    fn this_process_has_figures_on_linux() {
        let f = read();
        assert!(f.resident_bytes.is_some_and(|b| b > 0), "{f:?}");
        assert!(f.open_fds.is_some_and(|n| n > 0), "{f:?}");
        assert!(f.start_time_seconds.is_some_and(|t| t > 1.0e9), "{f:?}");
    }
}
