//! systemd integration: `READY=1` once the state directory is reconciled, `STATUS=` lines,
//! and watchdog pings at half the `WatchdogSec` interval. All no-ops outside systemd.

use std::time::Duration;

use sd_notify::NotifyState;

/// The service is up.
pub fn ready() {
    let _ = sd_notify::notify(false, &[NotifyState::Ready]);
}

/// One line for `systemctl status`.
pub fn status(text: &str) {
    let _ = sd_notify::notify(false, &[NotifyState::Status(text)]);
}

/// The service is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// How often to ping the watchdog, when the service manager asked for it: half of
/// `WATCHDOG_USEC`. As in libsystemd's `sd_watchdog_enabled`, `WATCHDOG_PID`, when set, must
/// name this process, and when unset does not disable the watchdog (the sd-notify crate
/// would require it).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Pings the watchdog.
pub fn watchdog() {
    let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
}
