//! Jittered exponential backoff, so a fleet that lost its coordinator does not come back in
//! lockstep.

use std::time::Duration;

/// Delay before attempt `attempt` (1-based): `min · 2^(attempt-1)` capped at `max`, then
/// jittered uniformly into its upper half.
pub fn delay(attempt: u32, min: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let full = min.saturating_mul(1u32 << exp).min(max);
    let half = full / 2;
    half + jitter(full - half)
}

/// A uniformly random duration in `[0, span]`.
fn jitter(span: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    // Without randomness the delay is simply not jittered.
    let r = getrandom::fill(&mut bytes).map_or(0, |()| u64::from_le_bytes(bytes));
    let millis = span.as_millis().min(u128::from(u64::MAX)) as u64;
    Duration::from_millis(if millis == 0 { 0 } else { r % (millis + 1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_stays_within_its_band() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        for attempt in 1..40 {
            let d = delay(attempt, min, max);
            let full = min.saturating_mul(1 << (attempt - 1).min(30)).min(max);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(delay(50, min, max) <= max);
    }
}
