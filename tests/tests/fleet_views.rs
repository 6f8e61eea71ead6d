//! The fleet views on real processes: the fragmentation report (versions per cohort, the
//! Gini–Simpson index, who is behind and why, history from periodic snapshots), and
//! Prometheus's `/metrics`, parsed by a real parser and checked against the API.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::{BehindReason, DeviceView, FragmentationReport};
use ferry_tests::scenarios::{fragmented_fleet, rollout_awaiting_approval};
use ferry_tests::wait_until;

const T: Duration = Duration::from_secs(60);

#[test]
fn fragmentation_shows_versions_per_cohort_who_is_behind_and_why() -> Result<()> {
    let fleet = fragmented_fleet()?;
    let report = || -> Result<FragmentationReport> {
        fleet
            .coordinator
            .ctl_json(&["fleet", "fragmentation", "--by", "accelerator"])
    };
    let r = report()?;
    let m = &r.models[0];
    let all = &m.overall;
    ensure!(all.devices == 3 && all.distinct_versions == 2, "{all:?}");
    // Two on 2.0.0, one on 1.0.0: 1 − (4 + 1)/9.
    ensure!((all.index - 4.0 / 9.0).abs() < 1e-9, "index {}", all.index);
    let behind = &all.behind[0];
    ensure!(
        behind.reason == BehindReason::Pinned
            && behind.versions_behind == 1
            && behind.running.as_ref().map(ToString::to_string).as_deref() == Some("1.0.0"),
        "{behind:?}"
    );
    let cohorts: Vec<(&str, usize, usize, f64)> = m
        .cohorts
        .iter()
        .map(|c| (c.cohort.as_str(), c.devices, c.behind.len(), c.index))
        .collect();
    ensure!(
        cohorts == [("cpu", 2, 0, 0.0), ("gpu", 1, 1, 0.0)],
        "{cohorts:?}"
    );

    // The coordinator keeps snapshots (every second here), and the table shows their trend.
    wait_until("two fragmentation snapshots", T, || {
        Ok(report()?.models[0].history.len() >= 2)
    })?;
    let text = fleet
        .coordinator
        .ctl(&["fleet", "fragmentation", "--by", "accelerator"])?;
    for want in ["index over 7 day(s)", "ON prod", "pinned", "gpu"] {
        ensure!(text.contains(want), "no {want:?} in:\n{text}");
    }
    let widest = text
        .lines()
        .map(|l| l.chars().count())
        .max()
        .context("no output")?;
    ensure!(widest <= 80, "a line is {widest} columns wide:\n{text}");
    Ok(())
}

#[test]
fn metrics_parse_as_prometheus_and_agree_with_the_api() -> Result<()> {
    let fleet = fragmented_fleet()?;
    let c = &fleet.coordinator;
    // No token, a wrong one: refused. The read-only viewer token may read but not change.
    ensure!(ferry_tests::http::request(c.http, "GET", "/metrics", None)?.status == 401);
    ensure!(ferry_tests::http::request(c.http, "GET", "/metrics", Some("nope"))?.status == 401);
    let put = ferry_tests::http::request(
        c.http,
        "PUT",
        "/api/v1/aliases/detector/prod",
        Some(&c.token("viewer")?),
    )?;
    ensure!(put.status == 403, "viewer changed an alias: {}", put.status);
    ensure!(c.get("/api/v1/fleet/status", "viewer")?.status == 200);

    let reply = c.get("/metrics", "viewer")?;
    ensure!(reply.status == 200, "{}", reply.body);
    let lines = reply.body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).context("not Prometheus text")?;
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    // Releases are published for a year by default: prod's has most of that left.
    let left = value(
        "ferry_alias_release_expires_in_seconds",
        &[("model", "detector"), ("alias", "prod")],
    );
    ensure!(
        left.is_some_and(|s| s > 364.0 * 86_400.0 && s <= 365.0 * 86_400.0),
        "prod's release expires in {left:?} s"
    );
    let api: FragmentationReport = c.ctl_json(&["fleet", "fragmentation"])?;
    let frag = &api.models[0].overall;
    let index = value("ferry_fragmentation_index", &[("model", "detector")]);
    ensure!(
        index.is_some_and(|v| (v - frag.index).abs() < 1e-9),
        "index {index:?} vs {}",
        frag.index
    );
    for v in &frag.versions {
        let version = v
            .version
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let on_metrics: f64 = scrape
            .samples
            .iter()
            .filter(|s| {
                s.metric == "ferry_devices" && s.labels.get("version") == Some(version.as_str())
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) => v,
                _ => 0.0,
            })
            .sum();
        ensure!(
            on_metrics == v.devices as f64,
            "{version}: {on_metrics} vs {}",
            v.devices
        );
    }
    ensure!(value("ferry_devices_behind", &[("reason", "pinned")]) == Some(1.0));
    ensure!(value("ferry_quic_sessions_open", &[]) == Some(3.0));
    ensure!(value("ferry_update_served_bytes_total", &[]).is_some_and(|b| b > 0.0));
    // What every Prometheus target shows: its build, and the process collector's figures.
    // The admin port's requests by route pattern and status: the viewer's refused alias move
    // and its fleet status read are among them, a scanner's path is not a series of its own.
    let requests = |route: &str, method: &str, status: &str| {
        value(
            "ferry_http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    ensure!(requests("/api/v1/fleet/status", "GET", "200").is_some_and(|n| n >= 1.0));
    // (Read from the text: the parser used here splits label values at braces.)
    ensure!(reply.body.contains(
        "ferry_http_requests_total{route=\"/api/v1/aliases/{name}/{alias}\",method=\"PUT\",status=\"403\"} 1"
    ));
    ensure!(
        !reply.body.contains("/wp-login") && requests("unmatched", "GET", "404").is_none(),
        "no scan yet"
    );
    ensure!(
        ferry_tests::http::request(c.http, "GET", "/wp-login.php", Some(&c.token("viewer")?))?
            .status
            == 404
    );
    let again = c.get("/metrics", "viewer")?.body;
    ensure!(
        again.contains(
            "ferry_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1"
        ) && !again.contains("wp-login")
            && again.contains(
                "ferry_http_request_duration_seconds_bucket{route=\"/metrics\",le=\"+Inf\"}"
            ),
        "{again}"
    );
    // Counters of what happened: every device installed the fleet's releases, which were
    // published and pointed at.
    let installed: f64 = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "ferry_device_updates_total" && s.labels.get("outcome") == Some("installed")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    ensure!(installed >= 3.0, "{installed} installs counted");
    ensure!(value("ferry_publishes_total", &[]).is_some_and(|n| n >= 2.0));
    ensure!(value("ferry_alias_moves_total", &[]).is_some_and(|n| n >= 1.0));
    let protocol = ferry_shared::wire::PROTOCOL_VERSION.to_string();
    ensure!(value("ferry_build_info", &[("protocol", &protocol)]) == Some(1.0));
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        ensure!(value(name, &[]).is_some_and(|v| v > 0.0), "{name}");
    }
    // Bounded cardinality: no sample is labelled with a device.
    ensure!(
        scrape
            .samples
            .iter()
            .all(|s| !s.labels.iter().any(|(k, _)| k.contains("device"))),
        "per-device labels"
    );
    Ok(())
}

#[test]
fn every_table_fits_an_80_column_terminal() -> Result<()> {
    let fleet = fragmented_fleet()?;
    rollout_awaiting_approval(&fleet)?;
    let c = &fleet.coordinator;
    for args in [
        &["fleet", "status"][..],
        &["fleet", "fragmentation", "--by", "name"],
        &["alias", "list"],
        &["releases", "list"],
        &["devices", "list"],
        &["keys", "list"],
        &["rollout", "status"],
        &["rollout", "status", "canary-3"],
        &["audit", "--last", "40"],
        &["audit", "--verify"],
        &["gc"],
        &["stage", "detector", "1.0.0"],
        &["lineage", "detector", "1.0.0"],
        &["diff", "detector", "1.0.0", "2.0.0", "--all"],
    ] {
        let text = c.ctl(args)?;
        ensure!(!text.trim().is_empty(), "{args:?} printed nothing");
        for line in text.lines() {
            ensure!(
                line.chars().count() <= 80,
                "`ferryctl {}` printed a line of {} columns:\n{line}",
                args.join(" "),
                line.chars().count()
            );
        }
    }
    Ok(())
}

#[test]
fn the_device_list_pages_in_id_order() -> Result<()> {
    let fleet = fragmented_fleet()?;
    let c = &fleet.coordinator;
    let page = |query: &str| -> Result<Vec<String>> {
        let reply = c.get(&format!("/api/v1/devices{query}"), "viewer")?;
        ensure!(reply.status == 200, "{query}: {}", reply.body);
        let views: Vec<DeviceView> = serde_json::from_str(&reply.body)?;
        Ok(views.into_iter().map(|d| d.id).collect())
    };
    let all = page("")?;
    let mut sorted = all.clone();
    sorted.sort();
    ensure!(all.len() == 3 && all == sorted, "{all:?}");
    let first = page("?limit=2")?;
    ensure!(first == all[..2], "{first:?}");
    let rest = page(&format!("?limit=2&after={}", first[1]))?;
    ensure!(rest == all[2..], "{rest:?}");
    ensure!(page(&format!("?after={}", all[2]))?.is_empty());
    ensure!(c.get("/api/v1/devices?page=2", "viewer")?.status == 400);
    // Searched on the coordinator: a label exactly, a label's value, a part of an id.
    let gpu = page("?q=accelerator%3Dgpu")?;
    ensure!(gpu.len() == 1, "{gpu:?}");
    ensure!(page("?q=gpu")? == gpu);
    ensure!(page(&format!("?q={}", &gpu[0][3..12]))? == gpu);
    ensure!(page("?q=accelerator%3Dcpu&limit=1")?.len() == 1);
    ensure!(page("?q=region%3Dmars")?.is_empty());
    // One device, as the list shows it; an unknown one is 404.
    let one = c.get(&format!("/api/v1/devices/{}", gpu[0]), "viewer")?;
    let view: DeviceView = serde_json::from_str(&one.body)?;
    ensure!(view.id == gpu[0] && view.labels.get("accelerator").map(String::as_str) == Some("gpu"));
    ensure!(c.get("/api/v1/devices/nope", "viewer")?.status == 404);
    // The fragmentation report lists at most `behind` devices behind, and counts them all.
    let reply = c.get("/api/v1/fleet/fragmentation?behind=0", "viewer")?;
    let report: FragmentationReport = serde_json::from_str(&reply.body)?;
    let overall = &report.models[0].overall;
    ensure!(overall.behind.is_empty() && overall.behind_by_reason.values().sum::<usize>() == 1);
    Ok(())
}

#[test]
fn what_a_device_was_sent_is_on_its_page_after_a_coordinator_restart() -> Result<()> {
    let mut fleet = ferry_tests::Fleet::start(1, None)?;
    fleet.publish("1.0.0", &ferry_tests::model_bytes(1, 256 * 1024, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    let id = fleet.agents[0].status()?.device_id.context("no id")?;
    let sent = |fleet: &ferry_tests::Fleet| -> Result<Vec<(String, u64, u64)>> {
        let reply = fleet
            .coordinator
            .get(&format!("/api/v1/devices/{id}"), "viewer")?;
        ensure!(reply.status == 200, "{}", reply.body);
        let view: DeviceView = serde_json::from_str(&reply.body)?;
        Ok(view
            .transfers
            .iter()
            .map(|t| {
                let release = t
                    .release
                    .as_ref()
                    .map(|(name, version)| format!("{name} {version}"))
                    .unwrap_or_default();
                (release, t.wire_bytes, t.chunks)
            })
            .collect())
    };
    let before = sent(&fleet)?;
    ensure!(
        before.len() == 1 && before[0].0 == "detector 1.0.0" && before[0].1 > 0,
        "{before:?}"
    );
    // Stopped cleanly and started again: the page shows the same.
    fleet.coordinator.terminate()?;
    fleet.coordinator.restart()?;
    let after = sent(&fleet)?;
    ensure!(
        after == before,
        "{after:?} after {before:?}\n{}",
        fleet.coordinator.log_tail(30)
    );
    Ok(())
}
