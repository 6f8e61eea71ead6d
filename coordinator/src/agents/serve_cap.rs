//! The coordinator-wide serving cap (`serve_max_rate`): every chunk sent to any device passes
//! [`ServeCap::pace`], so a wave of thousands of devices shares the uplink at the rate the
//! operator set instead of filling it.

use std::sync::Mutex;
use std::time::Duration;

use ferry_shared::throttle::{Rate, TokenBucket};
use tokio::time::Instant;

/// Bursts allowed, as time at the cap.
const BURST: Duration = Duration::from_millis(50);

/// Holds what the coordinator serves to a rate.
pub struct ServeCap {
    epoch: Instant,
    bucket: Option<Mutex<TokenBucket>>,
}

impl ServeCap {
    /// A cap of `rate` for everything served.
    pub fn new(rate: Rate) -> Self {
        let epoch = Instant::now();
        let bucket = rate.bytes_per_second().map(|per_second| {
            Mutex::new(TokenBucket::with_burst_time(
                per_second,
                BURST,
                64 * 1024,
                0,
            ))
        });
        Self { epoch, bucket }
    }

    /// Counts `bytes` about to be sent; returns once they fit the cap.
    pub async fn pace(&self, bytes: usize) {
        let Some(bucket) = &self.bucket else {
            return;
        };
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let wait = match bucket.lock() {
            Ok(mut b) => b.take(bytes as u64, now),
            Err(_) => Duration::ZERO,
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn everything_served_shares_the_cap() {
        let cap = std::sync::Arc::new(ServeCap::new("2 MiB/s".parse().unwrap()));
        let started = Instant::now();
        // Four senders of 1 MiB each: 4 MiB at 2 MiB/s together.
        let mut sends = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let cap = cap.clone();
            sends.spawn(async move {
                for _ in 0..16 {
                    cap.pace(64 * 1024).await;
                }
            });
        }
        while sends.join_next().await.is_some() {}
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1900) && took <= Duration::from_millis(2000),
            "{took:?}"
        );
    }
}
