//! Requests the admin HTTP port answered, by route (the router's pattern, never the raw path:
//! bounded cardinality), method and status, with their durations: counted by the admin
//! API's middleware (`http::track_requests`) and shown on `/metrics` as
//! `ferry_http_requests_total` and `ferry_http_request_duration_seconds`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the duration histogram's buckets, in seconds.
pub(crate) const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// One (route, method, status)'s requests.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Tally {
    /// Requests answered.
    pub count: u64,
    /// Their durations added up, in seconds.
    pub seconds: f64,
    /// Requests within each of [`BUCKETS`] (not cumulative).
    pub buckets: [u64; BUCKETS.len()],
}

/// The requests answered since start.
#[derive(Default)]
pub struct RequestFigures {
    inner: Mutex<BTreeMap<(String, String, u16), Tally>>,
}

impl RequestFigures {
    /// Counts one request.
    pub(crate) fn record(&self, route: &str, method: &str, status: u16, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let tally = map
            .entry((route.to_owned(), method.to_owned(), status))
            .or_default();
        tally.count += 1;
        tally.seconds += seconds;
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            tally.buckets[i] += 1;
        }
    }

    /// Every tally, by (route, method, status).
    pub(crate) fn snapshot(&self) -> BTreeMap<(String, String, u16), Tally> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_lands_in_the_first_bucket_it_fits_and_in_the_sums() {
        let figures = RequestFigures::default();
        figures.record("/api/v1/devices", "GET", 200, Duration::from_millis(3));
        figures.record("/api/v1/devices", "GET", 200, Duration::from_millis(300));
        figures.record("/api/v1/devices", "GET", 200, Duration::from_secs(60));
        let all = figures.snapshot();
        let t = &all[&("/api/v1/devices".to_owned(), "GET".to_owned(), 200)];
        assert_eq!(t.count, 3);
        assert_eq!(t.buckets[0], 1);
        assert_eq!(t.buckets[6], 1);
        assert_eq!(
            t.buckets.iter().sum::<u64>(),
            2,
            "past the last bound: +Inf only"
        );
        assert!((t.seconds - 60.303).abs() < 1e-9);
    }
}
