//! Prometheus against a real coordinator: the shipped alert rules pass `promtool check
//! rules`, every series the rules and the example Grafana dashboard name is one the
//! coordinator exports, and a real Prometheus (Debian's, installed by
//! `scripts/install-prometheus.sh`) scrapes `/metrics` with the viewer token as its
//! `credentials_file` and sees the fleet.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ferry_tests::{AgentSpec, Fleet, model_bytes, wait_until};

const WAIT: Duration = Duration::from_secs(60);

fn shipped(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../coordinator/prometheus")
        .join(file)
}

fn tool(name: &str) -> Result<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.with_context(|| format!("no {name} on PATH (run scripts/install-prometheus.sh)"))
}

/// The metric families a `/metrics` text declares.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The `ferry_…` and `process_…` series names in `text` (a rule or dashboard file), a
/// histogram's `_bucket`/`_sum`/`_count` series named by their family.
fn named_series(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let starts = (rest.starts_with("ferry_") || rest.starts_with("process_"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if starts {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(family.to_owned());
            i += end;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

fn fleet_with_a_device() -> Result<Fleet> {
    let mut fleet = Fleet::start(0, None)?;
    fleet.add_agent(AgentSpec::named("scraped"))?;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", WAIT)?;
    Ok(fleet)
}

#[test]
fn the_shipped_rules_check_and_name_only_series_the_coordinator_exports() -> Result<()> {
    let rules = shipped("alerts.yml");
    let out = Command::new(tool("promtool")?)
        .args(["check", "rules"])
        .arg(&rules)
        .output()?;
    ensure!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dashboard = std::fs::read_to_string(shipped("grafana-dashboard.json"))?;
    let parsed: serde_json::Value = serde_json::from_str(&dashboard)?;
    ensure!(parsed["panels"].as_array().is_some_and(|p| !p.is_empty()));
    let fleet = fleet_with_a_device()?;
    let exported = families(&fleet.coordinator.get("/metrics", "viewer")?.body);
    for (file, text) in [
        ("alerts.yml", std::fs::read_to_string(&rules)?),
        ("grafana-dashboard.json", dashboard),
    ] {
        let named = named_series(&text);
        ensure!(!named.is_empty(), "{file} names no series");
        let unknown: Vec<_> = named.difference(&exported).collect();
        ensure!(
            unknown.is_empty(),
            "{file} names series nobody exports: {unknown:?}"
        );
    }
    Ok(())
}

/// Kills the Prometheus server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_coordinator_with_the_viewer_token() -> Result<()> {
    let fleet = fleet_with_a_device()?;
    let dir = tempfile::tempdir()?;
    let token = fleet.coordinator.data_dir.join("viewer.token");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nrule_files: [\"{rules}\"]\nscrape_configs:\n  - job_name: ferry\n    authorization:\n      credentials_file: {token}\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules = shipped("alerts.yml").display(),
            token = token.display(),
            target = fleet.coordinator.http
        ),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server(
        Command::new(tool("prometheus")?)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log"))?)
            .spawn()
            .context("cannot start prometheus")?,
    );
    let addr: std::net::SocketAddr = listen.parse()?;
    let query = |q: &str| -> Result<serde_json::Value> {
        let reply =
            ferry_tests::http::request(addr, "GET", &format!("/api/v1/query?query={q}"), None)?;
        if reply.status != 200 {
            bail!("prometheus answered {}: {}", reply.status, reply.body);
        }
        Ok(serde_json::from_str(&reply.body)?)
    };
    let value = |v: &serde_json::Value| -> Option<f64> {
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let seen = wait_until("Prometheus to scrape the coordinator", WAIT, || {
        Ok(query("up%7Bjob%3D%22ferry%22%7D")
            .ok()
            .as_ref()
            .and_then(value)
            == Some(1.0)
            && query("ferry_devices_known").ok().as_ref().and_then(value) == Some(1.0))
    });
    if seen.is_err() {
        let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
        bail!("{seen:?}\n{log}");
    }
    let installed = query("sum(ferry_device_updates_total%7Boutcome%3D%22installed%22%7D)")?;
    ensure!(value(&installed) == Some(1.0), "{installed}");
    drop(server);
    Ok(())
}
