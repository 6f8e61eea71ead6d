//! Waiting on conditions with a deadline.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Polls `check` every 20 ms until it returns `Ok(true)`; fails after `timeout` with `what`
/// and the last error seen.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut last_error = None;
    loop {
        match check() {
            Ok(true) => return Ok(start.elapsed()),
            Ok(false) => {}
            // A check that cannot succeed any more says so by failing with a message that
            // starts with "fatal:"; everything else may be transient and is retried.
            Err(e) if format!("{e}").contains(" exited: ") => return Err(e),
            Err(e) => last_error = Some(e),
        }
        if start.elapsed() > timeout {
            match last_error {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what} (last error: {e:#})")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
