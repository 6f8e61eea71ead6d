//! Byte rates and the token bucket that holds a transfer to one: the agent's download cap
//! and the coordinator's serving cap. Pure: the caller says what time it is and sleeps for as
//! long as [`TokenBucket::take`] says.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Smallest rate accepted, in bytes per second: below it a download of a model would take
/// longer than anyone means.
pub const MIN_RATE: u64 = 1024;

/// A rate in bytes per second, written `4 MiB/s`, `500 KiB/s`, `20 Mbit/s`, `1.5 GB/s` (the
/// `/s` may be left out), or `unlimited`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rate {
    /// No cap.
    Unlimited,
    /// At most this many bytes per second.
    PerSecond(u64),
}

impl Rate {
    /// Bytes per second, `None` for unlimited.
    pub fn bytes_per_second(self) -> Option<u64> {
        match self {
            Rate::Unlimited => None,
            Rate::PerSecond(n) => Some(n),
        }
    }

    /// The lower of two caps.
    pub fn min(self, other: Rate) -> Rate {
        match (self, other) {
            (Rate::Unlimited, r) | (r, Rate::Unlimited) => r,
            (Rate::PerSecond(a), Rate::PerSecond(b)) => Rate::PerSecond(a.min(b)),
        }
    }
}

/// A rate's text that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "rate {0:?}: write a number and a unit, e.g. `4 MiB/s`, `500 KiB/s`, `20 Mbit/s`, or `unlimited` (at least 1 KiB/s)"
)]
pub struct RateError(String);

const UNITS: [(&str, f64); 12] = [
    ("B", 1.0),
    ("KB", 1e3),
    ("KiB", 1024.0),
    ("MB", 1e6),
    ("MiB", 1024.0 * 1024.0),
    ("GB", 1e9),
    ("GiB", 1024.0 * 1024.0 * 1024.0),
    ("bit", 0.125),
    ("kbit", 125.0),
    ("Mbit", 125_000.0),
    ("Gbit", 125_000_000.0),
    ("Kbit", 125.0),
];

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, RateError> {
        let error = || RateError(s.to_owned());
        let text = s.trim();
        if text.eq_ignore_ascii_case("unlimited") {
            return Ok(Rate::Unlimited);
        }
        let text = text.strip_suffix("/s").unwrap_or(text).trim_end();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(error)?;
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().map_err(|_| error())?;
        let scale = UNITS
            .iter()
            .find(|(u, _)| *u == unit.trim())
            .map(|(_, scale)| *scale)
            .ok_or_else(error)?;
        let bytes = number * scale;
        if !bytes.is_finite() || bytes < MIN_RATE as f64 || bytes > u64::MAX as f64 / 2.0 {
            return Err(error());
        }
        Ok(Rate::PerSecond(bytes.round() as u64))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Unlimited => f.write_str("unlimited"),
            Rate::PerSecond(n) if n % (1024 * 1024) == 0 => write!(f, "{} MiB/s", n >> 20),
            Rate::PerSecond(n) if n % 1024 == 0 => write!(f, "{} KiB/s", n >> 10),
            Rate::PerSecond(n) => write!(f, "{n} B/s"),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A cap that depends on the time of week: the first period whose windows hold the moment
/// decides, else `default` (`max_rate = "2 MiB/s"`, full speed `daily 22:00-06:00`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateSchedule {
    /// The cap outside every period.
    pub default: Rate,
    /// Periods with their own cap, first match wins.
    pub periods: Vec<(Vec<crate::window::Window>, Rate)>,
}

impl RateSchedule {
    /// No cap, ever.
    pub fn unlimited() -> Self {
        Self {
            default: Rate::Unlimited,
            periods: Vec::new(),
        }
    }

    /// Whether it never caps anything.
    pub fn is_unlimited(&self) -> bool {
        self.default == Rate::Unlimited && self.periods.iter().all(|(_, r)| *r == Rate::Unlimited)
    }

    /// The cap at `at`, local time.
    pub fn rate_at(&self, at: crate::window::WeekMinute) -> Rate {
        self.periods
            .iter()
            .find(|(windows, _)| windows.iter().any(|w| w.contains(at)))
            .map_or(self.default, |(_, rate)| *rate)
    }
}

/// A token bucket: bytes flow at `rate` on average, in bursts of at most `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Tokens in the bucket, in byte-nanoseconds over the rate's units: bytes × 1e9.
    tokens: u128,
    /// When the tokens were counted, in the caller's nanoseconds.
    at: u64,
}

impl TokenBucket {
    /// A full bucket for `rate` bytes per second with bursts of `burst` bytes (at least one
    /// byte), at time `now` (nanoseconds on the caller's monotonic clock).
    pub fn new(rate: u64, burst: u64, now: u64) -> Self {
        let rate = rate.max(1);
        let burst = burst.max(1);
        Self {
            rate,
            burst,
            tokens: u128::from(burst) * 1_000_000_000,
            at: now,
        }
    }

    /// A full bucket for `rate` bytes per second whose bursts last `burst` at that rate (at
    /// least `min_burst` bytes), at `now`.
    pub fn with_burst_time(rate: u64, burst: Duration, min_burst: u64, now: u64) -> Self {
        let bytes = u128::from(rate) * burst.as_nanos() / 1_000_000_000;
        Self::new(
            rate,
            u64::try_from(bytes).unwrap_or(u64::MAX).max(min_burst),
            now,
        )
    }

    /// The rate it holds to, in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Changes the rate (a schedule moved on); the tokens stay, up to the burst.
    pub fn set_rate(&mut self, rate: u64) {
        self.rate = rate.max(1);
    }

    /// Takes `bytes` at `now`; how long the caller must wait before they count as sent. The
    /// debt is kept: a large take makes the next ones wait too, so the average holds
    /// whatever the sizes.
    pub fn take(&mut self, bytes: u64, now: u64) -> Duration {
        let cap = u128::from(self.burst) * 1_000_000_000;
        // Refill for the time since the tokens were counted; when earlier takes are still
        // being paid for (`at` ahead of `now`), nothing refills yet.
        if now > self.at {
            let elapsed = u128::from(now - self.at);
            self.tokens = self
                .tokens
                .saturating_add(elapsed * u128::from(self.rate))
                .min(cap);
            self.at = now;
        }
        let want = u128::from(bytes) * 1_000_000_000;
        if self.tokens >= want {
            self.tokens -= want;
            return Duration::ZERO;
        }
        // In debt: the bucket is empty until the refill covers it, which moves the count's
        // time ahead; the caller waits until then.
        let debt = want - self.tokens;
        self.tokens = 0;
        let pay_ns = u64::try_from(debt.div_ceil(u128::from(self.rate))).unwrap_or(u64::MAX);
        self.at = self.at.saturating_add(pay_ns);
        Duration::from_nanos(self.at.saturating_sub(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_the_units_people_write() {
        let r = |s: &str| s.parse::<Rate>().unwrap();
        assert_eq!(r("4 MiB/s"), Rate::PerSecond(4 << 20));
        assert_eq!(r("500KiB"), Rate::PerSecond(500 << 10));
        assert_eq!(r("20 Mbit/s"), Rate::PerSecond(2_500_000));
        assert_eq!(r("1.5 GB/s"), Rate::PerSecond(1_500_000_000));
        assert_eq!(r("unlimited"), Rate::Unlimited);
        assert_eq!(r("4 MiB/s").to_string(), "4 MiB/s");
        for bad in [
            "", "fast", "4", "4 MiBs", "-1 MiB/s", "1 B/s", "NaN MiB", "1e400 GB",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?}");
        }
        assert_eq!(r("1 MiB/s").min(Rate::Unlimited), r("1 MiB/s"));
        assert_eq!(r("1 MiB/s").min(r("2 MiB/s")), r("1 MiB/s"));
    }

    #[test]
    fn a_schedule_lifts_the_cap_at_night() {
        use crate::window::WeekMinute;
        let schedule = RateSchedule {
            default: "2 MiB/s".parse().unwrap(),
            periods: vec![(vec!["daily 22:00-06:00".parse().unwrap()], Rate::Unlimited)],
        };
        assert!(!schedule.is_unlimited());
        assert_eq!(
            schedule.rate_at(WeekMinute::new(2, 12, 0).unwrap()),
            Rate::PerSecond(2 << 20)
        );
        assert_eq!(
            schedule.rate_at(WeekMinute::new(2, 23, 0).unwrap()),
            Rate::Unlimited
        );
        assert!(RateSchedule::unlimited().is_unlimited());
    }

    #[test]
    fn the_bucket_holds_the_average_whatever_the_take_sizes() {
        let second = 1_000_000_000u64;
        let mut bucket = TokenBucket::new(1000, 100, 0);
        // The burst goes at once, then the rate.
        assert_eq!(bucket.take(100, 0), Duration::ZERO);
        assert_eq!(bucket.take(500, 0), Duration::from_millis(500));
        // A caller that slept as told: the next 1000 bytes take a second more.
        let mut now = second / 2;
        let mut waited = Duration::ZERO;
        for _ in 0..10 {
            let wait = bucket.take(100, now);
            waited += wait;
            now += u64::try_from(wait.as_nanos()).unwrap();
        }
        assert_eq!(waited, Duration::from_secs(1));
        // Takes at one moment from several callers queue: each waits for all before it.
        let mut queue = TokenBucket::new(1000, 1, 0);
        let waits: Vec<Duration> = (0..3).map(|_| queue.take(1000, 0)).collect();
        assert_eq!(
            waits,
            [999_000_000, 1_999_000_000, 2_999_000_000].map(Duration::from_nanos)
        );
        // Idle time refills only up to the burst.
        now += 60 * second;
        assert_eq!(bucket.take(100, now), Duration::ZERO);
        assert_eq!(bucket.take(100, now), Duration::from_millis(100));
        // Huge takes and clocks never overflow.
        let mut bucket = TokenBucket::new(1, 1, 0);
        assert!(bucket.take(u64::MAX, 0) > Duration::from_secs(1 << 30));
        assert!(
            bucket.take(u64::MAX, u64::MAX) < Duration::from_secs(1),
            "saturates, no panic"
        );
    }
}
