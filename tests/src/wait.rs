//! Waiting on conditions with a deadline.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// An error that no amount of waiting will cure (a process the condition depends on has
/// exited); [`wait_until`] returns it at once instead of retrying until the deadline.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Hopeless(pub String);

/// Polls `check` every 20 ms until it returns `Ok(true)`; fails after `timeout` with `what`
/// and the last error seen, or at once when `check` fails with [`Hopeless`].
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
            // A check that cannot succeed any more says so with `Hopeless`; every other error
            // may be transient and is retried.
            Err(e) if e.is::<Hopeless>() => return Err(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hopeless_check_ends_the_wait_at_once_and_others_are_retried() {
        let started = std::time::Instant::now();
        let err = wait_until("never", Duration::from_secs(30), || {
            Err(Hopeless("agent-1 exited".into()).into())
        })
        .unwrap_err();
        assert!(err.is::<Hopeless>());
        assert!(started.elapsed() < Duration::from_secs(5));

        let mut calls = 0;
        wait_until("third time", Duration::from_secs(30), || {
            calls += 1;
            if calls < 3 {
                bail!("not yet")
            } else {
                Ok(true)
            }
        })
        .unwrap();
        assert_eq!(calls, 3);
    }
}
