//! When the device may switch (`[maintenance]`): inside its update windows (device-local
//! time), and while its application holds no update lock. The application takes the lock with
//! a datagram on the metrics socket (`lock 600 surgery in progress`: busy for ten minutes,
//! `unlock` to let go) or with a file (`lock_file`; it may hold `UNIX_SECONDS reason` to say
//! until when). A lock lasts at most [`MAX_LOCK_SECS`]: a crashed application cannot keep a
//! device from its updates forever. Rollbacks are never held back.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferry_shared::window::{WeekMinute, Window, open, opens_in};
use ferry_shared::wire::DeferReason;

/// Longest an application lock holds, in seconds (a day).
pub const MAX_LOCK_SECS: u64 = 24 * 3600;

/// Longest reason kept, in characters.
const MAX_REASON: usize = 200;

/// The device's own rules (`[maintenance]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Switches happen only inside these (none: any time).
    pub windows: Vec<Window>,
    /// Downloads wait for the windows too (default: they happen any time).
    pub downloads_in_window_only: bool,
    /// The application's lock file.
    pub lock_file: Option<PathBuf>,
}

/// A lock an application took over the metrics socket.
#[derive(Debug, Default)]
pub struct AppLock(Mutex<Option<(u64, String)>>);

/// A datagram that takes or releases the lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockCommand {
    /// Busy for this many seconds, for this reason.
    Lock(u64, String),
    /// Done.
    Unlock,
}

/// Reads `lock SECONDS [reason…]` or `unlock`; `None` for anything else (a metrics line).
pub fn parse_lock(line: &str) -> Option<Result<LockCommand, String>> {
    let mut words = line.split_whitespace();
    match words.next()? {
        "unlock" => Some(Ok(LockCommand::Unlock)),
        "lock" => Some(match words.next().map(str::parse::<u64>) {
            Some(Ok(secs)) if secs > 0 => Ok(LockCommand::Lock(
                secs.min(MAX_LOCK_SECS),
                reason(&words.collect::<Vec<_>>().join(" ")),
            )),
            _ => Err(format!("{line:?}: expected `lock SECONDS [reason]`")),
        }),
        _ => None,
    }
}

fn reason(text: &str) -> String {
    let text: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON)
        .collect();
    if text.trim().is_empty() {
        "the application".to_owned()
    } else {
        text.trim().to_owned()
    }
}

impl AppLock {
    /// Applies a command at `now` (Unix seconds).
    pub fn apply(&self, command: LockCommand, now: u64) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *held = match command {
            LockCommand::Lock(secs, by) => Some((now.saturating_add(secs), by)),
            LockCommand::Unlock => None,
        };
    }

    /// The lock in force at `now`: until when, and why.
    pub fn held(&self, now: u64) -> Option<(u64, String)> {
        let held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        held.clone().filter(|(until, _)| *until > now)
    }
}

/// The lock file's word at `now`: `None` when there is none, it expired, or it is older than
/// [`MAX_LOCK_SECS`].
fn file_lock(path: &Path, now: u64) -> Option<(Option<u64>, String)> {
    let meta = std::fs::metadata(path).ok()?;
    let written = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(now, |d| d.as_secs());
    if now.saturating_sub(written) > MAX_LOCK_SECS {
        return None;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let first = text.lines().next().unwrap_or("").trim();
    let (until, rest) = match first.split_once(' ').unwrap_or((first, "")) {
        (n, rest) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (n.parse::<u64>().ok(), rest)
        }
        _ => (None, first),
    };
    if until.is_some_and(|u| u <= now) {
        return None;
    }
    Some((until, reason(rest)))
}

impl Maintenance {
    /// Whether the device may switch at `now` (Unix seconds, `at` in local time), given the
    /// coordinator's windows for its cohort besides its own (both must be open) and the
    /// application's lock; and whether downloads wait too.
    pub fn gate(
        &self,
        cohort_windows: &[Window],
        lock: &AppLock,
        now: u64,
        at: WeekMinute,
    ) -> (Option<DeferReason>, bool) {
        let closed = [self.windows.as_slice(), cohort_windows]
            .into_iter()
            .filter(|w| !open(w, at))
            .map(|w| opens_in(w, at))
            .max();
        if let Some(minutes) = closed {
            let opens = now.saturating_add(u64::from(minutes) * 60);
            let downloads_wait = self.downloads_in_window_only;
            return (
                Some(DeferReason::Window {
                    opens: Some(opens - opens % 60),
                }),
                downloads_wait,
            );
        }
        let locked = lock
            .held(now)
            .map(|(until, by)| (Some(until), by))
            .or_else(|| self.lock_file.as_deref().and_then(|p| file_lock(p, now)));
        match locked {
            Some((until, by)) => (Some(DeferReason::Locked { until, by }), false),
            None => (None, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u8, h: u8, m: u8) -> WeekMinute {
        WeekMinute::new(day, h, m).unwrap()
    }

    #[test]
    fn windows_both_the_devices_and_the_cohorts_must_be_open() {
        let m = Maintenance {
            windows: vec!["daily 01:00-05:00".parse().unwrap()],
            downloads_in_window_only: true,
            lock_file: None,
        };
        let lock = AppLock::default();
        let (closed, downloads_wait) = m.gate(&[], &lock, 0, at(0, 0, 30));
        assert_eq!(closed, Some(DeferReason::Window { opens: Some(1800) }));
        assert!(downloads_wait);
        assert_eq!(m.gate(&[], &lock, 0, at(0, 2, 0)).0, None);
        // The cohort's window is 03:00-04:00: at 02:00 the device's is open, its cohort's not.
        let cohort = ["daily 03:00-04:00".parse().unwrap()];
        assert!(m.gate(&cohort, &lock, 0, at(0, 2, 0)).0.is_some());
        assert_eq!(m.gate(&cohort, &lock, 0, at(0, 3, 30)).0, None);
    }

    #[test]
    fn an_application_lock_by_datagram_or_file_expires_and_is_bounded() {
        let m = Maintenance::default();
        let lock = AppLock::default();
        assert_eq!(
            parse_lock("lock 600 surgery in progress"),
            Some(Ok(LockCommand::Lock(600, "surgery in progress".into())))
        );
        assert_eq!(
            parse_lock("lock 99999999"),
            Some(Ok(LockCommand::Lock(
                MAX_LOCK_SECS,
                "the application".into()
            )))
        );
        assert!(parse_lock("lock soon").unwrap().is_err());
        assert_eq!(parse_lock("ok 12"), None);
        lock.apply(LockCommand::Lock(600, "surgery".into()), 1000);
        assert_eq!(
            m.gate(&[], &lock, 1500, at(0, 0, 0)).0,
            Some(DeferReason::Locked {
                until: Some(1600),
                by: "surgery".into()
            })
        );
        assert_eq!(m.gate(&[], &lock, 1600, at(0, 0, 0)).0, None, "expired");
        lock.apply(LockCommand::Lock(600, "again".into()), 1600);
        lock.apply(LockCommand::Unlock, 1700);
        assert_eq!(m.gate(&[], &lock, 1700, at(0, 0, 0)).0, None);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("busy");
        let m = Maintenance {
            lock_file: Some(file.clone()),
            ..Maintenance::default()
        };
        let now = crate::unix_now();
        assert_eq!(m.gate(&[], &lock, now, at(0, 0, 0)).0, None, "no file");
        std::fs::write(&file, "batch job\n").unwrap();
        assert_eq!(
            m.gate(&[], &lock, now, at(0, 0, 0)).0,
            Some(DeferReason::Locked {
                until: None,
                by: "batch job".into()
            })
        );
        std::fs::write(&file, format!("{} night batch\n", now + 60)).unwrap();
        assert!(matches!(
            m.gate(&[], &lock, now, at(0, 0, 0)).0,
            Some(DeferReason::Locked { until: Some(_), .. })
        ));
        assert_eq!(
            m.gate(&[], &lock, now + 61, at(0, 0, 0)).0,
            None,
            "its time passed"
        );
        // Written more than a day ago: stale, ignored.
        std::fs::write(&file, "batch job\n").unwrap();
        assert_eq!(
            m.gate(&[], &lock, now + MAX_LOCK_SECS + 10, at(0, 0, 0)).0,
            None
        );
    }
}
