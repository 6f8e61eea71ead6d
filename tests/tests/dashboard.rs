//! The dashboard in a real browser: a coordinator with three agents and a rollout waiting for
//! approval, the page opened in headless Chromium (Debian's, installed by
//! `scripts/install-chromium.sh`) with the read-only viewer token, the numbers it shows checked
//! against the API, and a screenshot saved to `target/dashboard.png`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use ferry_coordinator::api::{DeviceView, FleetStatus, FragmentationReport};
use ferry_tests::scenarios::{fragmented_fleet, rollout_awaiting_approval};

fn chromium() -> Result<PathBuf> {
    let path = std::env::var_os("FERRY_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !path.exists() {
        bail!(
            "{} not found: run scripts/install-chromium.sh (or set FERRY_CHROMIUM)",
            path.display()
        );
    }
    Ok(path)
}

/// Runs headless Chromium on `url` with `extra` arguments; returns stdout.
fn browse(dir: &Path, url: &str, extra: &[&str]) -> Result<String> {
    let profile = tempfile::tempdir_in(dir)?;
    let out = Command::new(chromium()?)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=20000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .context("cannot run chromium")?;
    ensure!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of `attr` on the element carrying `marker` (an attribute="value" text).
fn attr_after(dom: &str, marker: &str, attr: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let tag_start = dom[..at].rfind('<')?;
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let key = format!("{attr}=\"");
    let from = tag.find(&key)? + key.len();
    Some(tag[from..from + tag[from..].find('"')?].to_owned())
}

/// The text inside the element with `id`.
fn text_of(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let open = at + dom[at..].find('>')? + 1;
    let close = open + dom[open..].find('<')?;
    Some(dom[open..close].trim().to_owned())
}

#[test]
fn the_dashboard_shows_what_the_api_says_in_a_real_browser() -> Result<()> {
    chromium()?;
    let fleet = fragmented_fleet()?;
    let c = &fleet.coordinator;
    rollout_awaiting_approval(&fleet)?;

    let status: FleetStatus = c.ctl_json(&["fleet", "status"])?;
    let frag: FragmentationReport = c.ctl_json(&["fleet", "fragmentation"])?;
    let devices: Vec<DeviceView> = c.ctl_json(&["devices", "list"])?;
    let gpu = devices
        .iter()
        .find(|d| d.labels.get("accelerator").map(String::as_str) == Some("gpu"))
        .context("no gpu device")?;

    let base = format!("http://{}/", c.http);
    let url = format!("{base}#token={}&q=accelerator%3Dgpu", c.token("viewer")?);
    let dom = browse(&fleet.dir, &url, &["--dump-dom"])?;
    ensure!(
        dom.contains("data-loaded=\"true\""),
        "the page never loaded its data:\n{dom}"
    );

    ensure!(text_of(&dom, "devices-total") == Some(status.devices_total.to_string()));
    ensure!(text_of(&dom, "devices-connected") == Some(status.devices_connected.to_string()));
    let model = &frag.models[0];
    let marker = format!("data-model=\"{}\"", model.model);
    ensure!(attr_after(&dom, &marker, "data-devices") == Some(model.overall.devices.to_string()));
    ensure!(
        attr_after(&dom, &marker, "data-index") == Some(format!("{:.4}", model.overall.index)),
        "index shown: {:?}, API: {}",
        attr_after(&dom, &marker, "data-index"),
        model.overall.index
    );
    for v in &model.overall.versions {
        let version = v
            .version
            .as_ref()
            .map_or("none".into(), ToString::to_string);
        let shown = attr_after(&dom, &format!("data-version=\"{version}\""), "data-count");
        ensure!(
            shown == Some(v.devices.to_string()),
            "{version}: {shown:?} vs {}",
            v.devices
        );
    }
    let behind = &model.overall.behind[0];
    ensure!(
        attr_after(
            &dom,
            &format!("data-behind=\"{}\"", behind.id),
            "data-reason"
        )
        .as_deref()
            == Some("pinned")
    );
    ensure!(
        attr_after(&dom, "data-rollout=\"canary-3\"", "data-phase").as_deref()
            == Some("AwaitingApproval")
    );
    // The wave's bar shows adoption (on target of those reached), not the wave's share.
    let canary = fleet.rollout("canary-3")?;
    let adoption = if canary.devices.targeted == 0 {
        0
    } else {
        (canary.devices.on_target as f64 / canary.devices.targeted as f64 * 100.0).round() as u64
    };
    ensure!(
        attr_after(&dom, "data-rollout=\"canary-3\"", "data-adoption")
            == Some(adoption.to_string()),
        "adoption shown: {:?}, API: {adoption}",
        attr_after(&dom, "data-rollout=\"canary-3\"", "data-adoption")
    );
    // The fragmentation chart places its samples on a 7-day time axis.
    ensure!(
        attr_after(&dom, &marker, "data-samples").is_some_and(|n| n.parse::<u64>().is_ok()),
        "no history chart"
    );
    // The search from the URL shows the GPU device and only it.
    let shown: Vec<&str> = dom
        .match_indices("data-device=\"")
        .map(|(i, _)| &dom[i + 13..i + 33])
        .collect();
    ensure!(shown == [gpu.id.as_str()], "search shows {shown:?}");

    // A page without a token asks for one and shows no data.
    let login = browse(&fleet.dir, &base, &["--dump-dom"])?;
    ensure!(
        !login.contains("data-loaded=\"true\""),
        "data without a token"
    );
    ensure!(
        text_of(&login, "updated").as_deref() == Some(""),
        "the sign-in screen says {:?}",
        text_of(&login, "updated")
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../dashboard.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &fleet.dir,
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1500",
        ],
    )?;
    let png =
        std::fs::read(&shot).with_context(|| format!("no screenshot at {}", shot.display()))?;
    ensure!(png.starts_with(b"\x89PNG"), "not a PNG");
    println!("screenshot: {}", shot.display());
    // And as a phone or a narrow window shows it.
    let narrow = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../dashboard-420.png");
    let _ = std::fs::remove_file(&narrow);
    browse(
        &fleet.dir,
        &url,
        &[
            &format!("--screenshot={}", narrow.display()),
            "--window-size=420,1500",
        ],
    )?;
    ensure!(std::fs::read(&narrow)?.starts_with(b"\x89PNG"), "not a PNG");
    println!("screenshot: {}", narrow.display());
    Ok(())
}
