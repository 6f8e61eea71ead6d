use super::*;

/// An arm of `requests` requests, `errors_pm` per mille failing, latencies around
/// `latency_ms`, and a `score` around `score` (uniform ±0.1) on every request.
fn arm(requests: u64, errors_pm: u64, latency_ms: u32, score: f64, seed: u64) -> Arm {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut arm = Arm {
        devices: 10,
        ..Arm::default()
    };
    let scores = arm.distributions.entry("score".into()).or_default();
    for _ in 0..requests {
        let r = next();
        arm.metrics.requests += 1;
        arm.metrics.errors += u64::from(r % 1000 < errors_pm);
        arm.metrics
            .latency
            .record(latency_ms / 2 + (r >> 20) as u32 % latency_ms);
        let s = score + 0.2 * (((r >> 11) as f64 / (1u64 << 53) as f64) - 0.5);
        let t = arm.metrics.custom.entry("score".into()).or_default();
        t.sum += s;
        t.count += 1;
        scores.record(s);
    }
    arm
}

fn row<'a>(rows: &'a [ReadoutRow], metric: &str) -> &'a ReadoutRow {
    rows.iter()
        .find(|r| r.metric == metric)
        .unwrap_or_else(|| panic!("no {metric} in {rows:?}"))
}

#[test]
fn a_better_challenger_shows_significant_differences_with_intervals_around_them() {
    // Error rate 5 % → 2 %, latency about halved, scores up by 0.05.
    let champion = arm(20_000, 50, 40, 0.60, 1);
    let challenger = arm(20_000, 20, 20, 0.65, 2);
    let rows = readout(&champion, &challenger);
    let errors = row(&rows, "error_rate");
    let d = errors.difference.unwrap();
    assert!((d + 0.03).abs() < 0.006, "{errors:?}");
    let (lo, hi) = errors.interval.unwrap();
    assert!(
        lo < d && d < hi && hi < 0.0 && errors.significant,
        "{errors:?}"
    );
    let p95 = row(&rows, "p95_latency_ms");
    assert!(p95.difference.unwrap() < 0.0 && p95.significant, "{p95:?}");
    let score = row(&rows, "mean score");
    let (lo, hi) = score.interval.unwrap();
    assert!(lo > 0.03 && hi < 0.07, "about +0.05: {score:?}");
    let drift = row(&rows, "drift score (psi)");
    assert!(drift.difference.unwrap() > 0.1, "{drift:?}");
    assert!(row(&rows, "drift score (ks)").difference.unwrap() > 0.15);
}

#[test]
fn the_same_version_on_both_arms_shows_nothing_significant() {
    let champion = arm(20_000, 30, 40, 0.60, 3);
    let challenger = arm(20_000, 30, 40, 0.60, 4);
    let rows = readout(&champion, &challenger);
    for metric in [
        "error_rate",
        "p50_latency_ms",
        "p95_latency_ms",
        "mean score",
    ] {
        let r = row(&rows, metric);
        assert!(!r.significant, "{r:?}");
        let (lo, hi) = r.interval.unwrap();
        assert!(lo <= 0.0 && 0.0 <= hi, "{r:?}");
    }
    assert!(row(&rows, "drift score (psi)").difference.unwrap() < 0.02);
}

#[test]
fn an_arm_without_traffic_gives_no_numbers_rather_than_wrong_ones() {
    let champion = arm(1000, 30, 40, 0.60, 5);
    let rows = readout(&champion, &Arm::default());
    let errors = row(&rows, "error_rate");
    assert_eq!(
        (errors.challenger, errors.difference, errors.interval),
        (None, None, None)
    );
    assert!(!errors.significant);
    let score = row(&rows, "mean score");
    assert_eq!(score.interval, None);
    assert!(
        rows.iter().all(|r| !r.metric.starts_with("drift")),
        "no drift without both sides"
    );
}
