//! The device's download cap (`[download]`): every byte a download receives, from the
//! coordinator or a mirror, passes [`Throttle::pace`], which holds the whole agent to the
//! cap the schedule gives for the device's local time. Reading slower lets QUIC's flow
//! control slow the sender: the link carries no more than the agent reads, give or take one
//! receive window.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use ferry_shared::throttle::{Rate, RateSchedule, TokenBucket};

/// How long a looked-up cap is trusted before the schedule is asked again.
const RECHECK: Duration = Duration::from_secs(20);

/// Bursts allowed, as time at the cap: small enough that the average holds over seconds.
const BURST: Duration = Duration::from_millis(50);

/// Holds downloads to the schedule's cap.
pub struct Throttle {
    schedule: RateSchedule,
    epoch: Instant,
    state: Mutex<State>,
}

struct State {
    /// The cap in force and when it was looked up.
    rate: Option<(Rate, Instant)>,
    bucket: Option<TokenBucket>,
}

impl Throttle {
    /// A throttle for `schedule`.
    pub fn new(schedule: RateSchedule) -> Self {
        Self {
            schedule,
            epoch: Instant::now(),
            state: Mutex::new(State {
                rate: None,
                bucket: None,
            }),
        }
    }

    /// The cap in force now.
    pub fn rate_now(&self) -> Rate {
        self.schedule.rate_at(crate::localtime::week_minute_now())
    }

    /// Counts `bytes` received; returns once they fit the cap (at once when uncapped).
    pub async fn pace(&self, bytes: usize) {
        if self.schedule.is_unlimited() {
            return;
        }
        let wait = self.debit(bytes as u64, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    fn debit(&self, bytes: u64, now: Instant) -> Duration {
        let Ok(mut state) = self.state.lock() else {
            return Duration::ZERO;
        };
        let rate = match state.rate {
            Some((rate, at)) if now.duration_since(at) < RECHECK => rate,
            _ => {
                let rate = self.rate_now();
                state.rate = Some((rate, now));
                rate
            }
        };
        let Some(per_second) = rate.bytes_per_second() else {
            state.bucket = None;
            return Duration::ZERO;
        };
        let nanos = u64::try_from(now.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let bucket = state.bucket.get_or_insert_with(|| {
            TokenBucket::with_burst_time(per_second, BURST, 16 * 1024, nanos)
        });
        if bucket.rate() != per_second {
            bucket.set_rate(per_second);
        }
        bucket.take(bytes, nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_capped_download_takes_as_long_as_the_cap_says() {
        let throttle = Throttle::new(RateSchedule {
            default: "1 MiB/s".parse().unwrap(),
            periods: vec![],
        });
        let started = tokio::time::Instant::now();
        for _ in 0..64 {
            throttle.pace(64 * 1024).await;
        }
        // 4 MiB at 1 MiB/s, less the first burst.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(3900) && took <= Duration::from_millis(4000),
            "{took:?}"
        );
        let free = Throttle::new(RateSchedule::unlimited());
        let started = tokio::time::Instant::now();
        free.pace(1 << 30).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
