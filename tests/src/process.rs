//! The coordinator and agent processes, with helpers to drive and observe them.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_agent::state::TransferStats;
use ferry_agent::status::AgentStatus;
use ferry_coordinator::api::{BehindReason, DeviceView, FleetStatus, FragmentationReport};
use ferry_shared::Version;
use serde::de::DeserializeOwned;

use crate::binaries::Binaries;

/// Runs `ferry-coordinator ARGS…` to its end (a subcommand, say: `migrate`, `restore`,
/// `--verify-audit`); returns whether it succeeded and what it printed (standard output, then
/// standard error).
pub fn run_coordinator(args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(crate::Binaries::get()?.coordinator)
        .args(args)
        .output()
        .context("cannot run ferry-coordinator")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// A running (or stopped) `ferry-coordinator`.
pub struct Coordinator {
    bins: Binaries,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// QUIC address.
    pub quic: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    /// The admin API's URL as the coordinator announced it (`http://` or `https://`).
    pub admin_url: String,
    /// Certificate fingerprint.
    pub fingerprint: String,
    /// Its configuration file, when it has one.
    config: Option<PathBuf>,
    cadence: Cadence,
    log: PathBuf,
    child: Option<Child>,
}

/// How often a coordinator's timed work runs (its `--heartbeat-secs`, `--rollout-tick-ms` and
/// `--fragmentation-sample-secs`).
#[derive(Clone, Copy, Debug)]
pub struct Cadence {
    /// How often agents report when nothing changes.
    pub heartbeat_secs: u32,
    /// How often rollouts are judged.
    pub rollout_tick_ms: u64,
    /// How often a fragmentation snapshot is kept.
    pub fragmentation_sample_secs: u64,
}

impl Cadence {
    /// Quick, so that tests do not wait: heartbeats every second, rollouts judged five times a
    /// second, a fragmentation snapshot every second.
    pub const TESTS: Self = Self {
        heartbeat_secs: 1,
        rollout_tick_ms: 200,
        fragmentation_sample_secs: 1,
    };

    /// For benches at fleet scale: the tests' rollout tick (the rollback figure includes it),
    /// but fragmentation snapshots hourly, as deployed. A snapshot reads every device record:
    /// at 20,000 devices, once a second, it took a tenth of the coordinator's CPU while an
    /// alias move was being pushed.
    pub const FLEET_BENCH: Self = Self {
        heartbeat_secs: 1,
        rollout_tick_ms: 200,
        fragmentation_sample_secs: 3600,
    };
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

impl Coordinator {
    /// Starts a coordinator on loopback with OS-chosen ports, heartbeats every second.
    pub fn start(bins: &Binaries, data_dir: &Path, log: &Path) -> Result<Self> {
        Self::start_configured(bins, data_dir, log, None)
    }

    /// Starts one with a configuration file (flags still set its addresses and timings).
    pub fn start_configured(
        bins: &Binaries,
        data_dir: &Path,
        log: &Path,
        config: Option<&Path>,
    ) -> Result<Self> {
        Self::start_at(bins, data_dir, log, config, Cadence::TESTS)
    }

    /// Starts one with a configuration file and the timings of `cadence`.
    pub fn start_at(
        bins: &Binaries,
        data_dir: &Path,
        log: &Path,
        config: Option<&Path>,
        cadence: Cadence,
    ) -> Result<Self> {
        let any: SocketAddr = "127.0.0.1:0".parse()?;
        let mut c = Self {
            bins: bins.clone(),
            data_dir: data_dir.to_owned(),
            quic: any,
            http: any,
            admin_url: String::new(),
            fingerprint: String::new(),
            config: config.map(Path::to_owned),
            cadence,
            log: log.to_owned(),
            child: None,
        };
        c.spawn()?;
        Ok(c)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut command = Command::new(&self.bins.coordinator);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--quic-listen")
            .arg(self.quic.to_string())
            .arg("--http-listen")
            .arg(self.http.to_string())
            .arg("--heartbeat-secs")
            .arg(self.cadence.heartbeat_secs.to_string())
            .arg("--rollout-tick-ms")
            .arg(self.cadence.rollout_tick_ms.to_string())
            .arg("--fragmentation-sample-secs")
            .arg(self.cadence.fragmentation_sample_secs.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(append(&self.log)?)
            .spawn()
            .context("cannot start ferry-coordinator")?;
        let stdout = child.stdout.take().context("no stdout")?;
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("ready ") {
                    let _ = tx.send(line);
                }
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(30)).with_context(|| {
            format!(
                "the coordinator did not become ready; see {}",
                self.log.display()
            )
        })?;
        for field in ready.split_whitespace().skip(1) {
            match field.split_once('=') {
                Some(("quic", v)) => self.quic = v.parse()?,
                Some(("http", v)) => self.http = v.parse()?,
                Some(("admin", v)) => self.admin_url = v.to_owned(),
                Some(("fingerprint", v)) => self.fingerprint = v.to_owned(),
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads `config` as its configuration from its next start on.
    pub fn use_config(&mut self, config: &Path) {
        self.config = Some(config.to_owned());
    }

    /// Starts it again on the same ports and data directory.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// Kills it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops it cleanly (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self) -> Result<()> {
        terminate(&mut self.child)
    }

    /// Runs ferryctl (admin token); returns its output whatever the exit code.
    pub fn ctl_output(&self, args: &[&str]) -> Result<Output> {
        let admin = std::fs::read_to_string(self.data_dir.join("admin.token"))?;
        self.ctl_output_as(admin.trim(), args)
    }

    /// Runs ferryctl with `token`; returns its output whatever the exit code.
    pub fn ctl_output_as(&self, token: &str, args: &[&str]) -> Result<Output> {
        self.ctl_base(token, args)
            .output()
            .context("cannot run ferryctl")
    }

    /// Runs ferryctl (admin token) against the admin API at `url` (a relay in front of this
    /// coordinator, say); returns its output whatever the exit code.
    pub fn ctl_output_at(&self, url: &str, args: &[&str]) -> Result<Output> {
        let admin = std::fs::read_to_string(self.data_dir.join("admin.token"))?;
        self.ctl_base(admin.trim(), args)
            .env("FERRY_URL", url)
            .output()
            .context("cannot run ferryctl")
    }

    /// Starts ferryctl (admin token) with its standard output and error piped, for a test
    /// that reads (or closes) them itself.
    pub fn ctl_command(&self, args: &[&str]) -> Result<Child> {
        let admin = std::fs::read_to_string(self.data_dir.join("admin.token"))?;
        self.ctl_base(admin.trim(), args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run ferryctl")
    }

    fn ctl_base(&self, token: &str, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bins.ctl);
        command
            .args(args)
            .env("FERRY_URL", &self.admin_url)
            .env("FERRY_TOKEN", token)
            .env("USER", "e2e")
            // Tables fit 80 columns unless the terminal says otherwise; tests check the 80.
            .env_remove("COLUMNS")
            .stdin(Stdio::null());
        // Over TLS, the coordinator's own certificate, pinned as agents pin it.
        match self.admin_url.starts_with("https://") {
            true => command.env("FERRY_PIN", &self.fingerprint),
            false => command.env_remove("FERRY_PIN"),
        };
        command
    }

    /// Runs ferryctl, which must succeed; returns its stdout.
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let out = self.ctl_output(args)?;
        if !out.status.success() {
            bail!(
                "ferryctl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs ferryctl, which must fail; returns its stderr and exit code.
    pub fn ctl_failing(&self, args: &[&str]) -> Result<(String, Option<i32>)> {
        let out = self.ctl_output(args)?;
        if out.status.success() {
            bail!(
                "ferryctl {} succeeded but should have failed",
                args.join(" ")
            );
        }
        Ok((
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code(),
        ))
    }

    /// Runs a ferryctl read command with `--json`.
    pub fn ctl_json<T: DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ctl(&all)?;
        serde_json::from_str(&text)
            .with_context(|| format!("ferryctl {} printed: {text}", args.join(" ")))
    }

    /// A new API token named `name` with `role` (`ferryctl tokens create`).
    pub fn create_token(
        &self,
        name: &str,
        role: ferry_coordinator::api::TokenRole,
    ) -> Result<String> {
        let created: ferry_coordinator::api::TokenCreated =
            self.ctl_json(&["tokens", "create", name, "--role", role.as_str()])?;
        Ok(created.token)
    }

    /// The last `lines` lines of the coordinator's log, for a failure's message.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `ferryctl fleet status --json`.
    pub fn fleet_status(&self) -> Result<FleetStatus> {
        self.ctl_json(&["fleet", "status"])
    }

    /// `ferryctl devices list --json`.
    pub fn devices(&self) -> Result<Vec<DeviceView>> {
        self.ctl_json(&["devices", "list"])
    }

    /// Why the device labelled `name = NAME` is behind on `model` (any model when `None`),
    /// by the fleet's fragmentation report; `None` when it is not behind.
    pub fn behind(
        &self,
        name: &str,
        model: Option<&str>,
    ) -> Result<Option<(BehindReason, Option<String>)>> {
        let id = self
            .devices()?
            .into_iter()
            .find(|d| d.labels.get("name").map(String::as_str) == Some(name))
            .with_context(|| format!("device {name} not listed"))?
            .id;
        let report: FragmentationReport = self.ctl_json(&["fleet", "fragmentation"])?;
        Ok(report
            .models
            .iter()
            .filter(|m| model.is_none_or(|want| m.model.as_str() == want))
            .flat_map(|m| &m.overall.behind)
            .find(|b| b.id == id)
            .map(|b| (b.reason, b.detail.clone())))
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `ferry-agent` with its own configuration and state directory.
pub struct Agent {
    bins: Binaries,
    /// A name for messages.
    pub name: String,
    /// Its configuration file.
    pub config: PathBuf,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// The model it follows.
    pub model: String,
    log: PathBuf,
    child: Option<Child>,
    /// The file-mode creation mask it starts with (through `sh`, which then execs it);
    /// `None` inherits the test's.
    pub umask: Option<u32>,
}

impl Agent {
    /// An agent (not started) for an existing configuration.
    pub fn new(
        bins: &Binaries,
        name: &str,
        config: &Path,
        state_dir: &Path,
        model: &str,
        log: &Path,
    ) -> Self {
        Self {
            bins: bins.clone(),
            name: name.to_owned(),
            config: config.to_owned(),
            state_dir: state_dir.to_owned(),
            model: model.to_owned(),
            log: log.to_owned(),
            child: None,
            umask: None,
        }
    }

    /// Starts the daemon.
    pub fn start(&mut self) -> Result<()> {
        self.start_with_env(&[])
    }

    /// From the next start on, runs a copy of the agent binary of its own, as a device does.
    /// Agents started from one file share its resident code pages, which hides what each one
    /// would hold alone (and the kernel does not page out pages mapped more than once).
    pub fn use_own_binary(&mut self) -> Result<()> {
        let copy = self
            .state_dir
            .parent()
            .unwrap_or(&self.state_dir)
            .join(format!("{}-ferry-agent", self.name));
        std::fs::copy(&self.bins.agent, &copy)
            .with_context(|| format!("copying the agent binary to {}", copy.display()))?;
        self.bins.agent = copy;
        Ok(())
    }

    /// Starts the daemon with extra environment variables.
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) -> Result<()> {
        let mut command = match self.umask {
            None => Command::new(&self.bins.agent),
            Some(mask) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("umask {mask:03o} && exec \"$0\" \"$@\""))
                    .arg(&self.bins.agent);
                sh
            }
        };
        let child = command
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(append(&self.log)?)
            .stderr(append(&self.log)?)
            .spawn()
            .context("cannot start ferry-agent")?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts the daemon again if it exited, as systemd's `Restart=` does; says whether it
    /// had to.
    pub fn restart_if_exited(&mut self) -> Result<bool> {
        let exited = match self.child.as_mut() {
            Some(child) => child.try_wait()?.is_some(),
            None => false,
        };
        if exited {
            self.start()?;
        }
        Ok(exited)
    }

    /// Kills the daemon with SIGKILL (as a power cut would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon cleanly (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self) -> Result<()> {
        terminate(&mut self.child)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the daemon process exists and has not exited (a zombie has exited).
    pub fn is_alive(&self) -> bool {
        self.pid().is_some_and(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit(')')
                        .next()
                        .map(|rest| rest.trim_start().starts_with('Z'))
                })
                .is_some_and(|zombie| !zombie)
        })
    }

    fn run(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.bins.agent)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot run ferry-agent")
    }

    /// `ferry-agent install-bundle FILE --wait SECS`; its output, failed or not.
    pub fn install_bundle(&self, file: &Path, wait_secs: u64) -> Result<Output> {
        self.run(&[
            "install-bundle",
            &file.to_string_lossy(),
            "--wait",
            &wait_secs.to_string(),
        ])
    }

    /// `ferry-agent status --json`.
    pub fn status(&self) -> Result<AgentStatus> {
        let out = self.run(&["status", "--json"])?;
        if !out.status.success() {
            bail!(
                "{}: status failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// What the download of `version` moved, from `status --json`. The agent records it just
    /// after it commits the switch, so this waits (briefly) for the record to name `version`.
    pub fn transfer_for(&self, version: &str) -> Result<TransferStats> {
        let mut found = None;
        crate::wait::wait_until(
            &format!("{} to record its update to {version}", self.name),
            std::time::Duration::from_secs(30),
            || {
                let update = self
                    .status()?
                    .models
                    .into_iter()
                    .next()
                    .and_then(|m| m.last_update)
                    .filter(|u| u.to.to_string() == version);
                found = update.map(|u| u.transfer);
                Ok(found.is_some())
            },
        )?;
        found.flatten().with_context(|| {
            format!(
                "{}'s update to {version} has no transfer figures",
                self.name
            )
        })
    }

    /// `ferry-agent rollback`; returns stdout.
    pub fn rollback(&self) -> Result<String> {
        let out = self.run(&["rollback"])?;
        if !out.status.success() {
            bail!(
                "{}: rollback failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sends `line` to the agent's metrics socket, as its application would (`ok 12`,
    /// `lock 600 busy`, `@tokenizer ok 3`).
    pub fn tell(&self, line: &str) -> Result<()> {
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        socket.send_to(line.as_bytes(), self.state_dir.join("metrics.sock"))?;
        Ok(())
    }

    /// Whether `current` of `model` names `version`.
    pub fn runs(&self, model: &str, version: &str) -> bool {
        self.current_of(model)
            .is_some_and(|v| v.to_string() == version)
    }

    /// The version `current` of another model the agent follows names.
    pub fn current_of(&self, model: &str) -> Option<Version> {
        self.link_of(model, "current")
    }

    /// Runs `ferry-agent rollback --model MODEL`; its output.
    pub fn rollback_model(&self, model: &str) -> Result<String> {
        let out = self.run(&["rollback", "--model", model])?;
        if !out.status.success() {
            bail!(
                "{}: rollback of {model} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn link(&self, which: &str) -> Option<Version> {
        self.link_of(&self.model, which)
    }

    fn link_of(&self, model: &str, which: &str) -> Option<Version> {
        let link = self.state_dir.join("models").join(model).join(which);
        std::fs::read_link(link)
            .ok()?
            .file_name()?
            .to_str()?
            .parse()
            .ok()
    }

    /// Why the agent holds `version` of its model back (it failed its health check or its
    /// verification for good), read from its state file; `None` when it does not, or when
    /// the file cannot be read (the agent may be writing it).
    pub fn hold_on(&self, version: &Version) -> Option<String> {
        let state = ferry_agent::state::StateFile::new(&self.state_dir)
            .load()
            .ok()?;
        let model = state
            .models
            .iter()
            .find(|(name, _)| name.as_str() == self.model)?
            .1;
        model
            .holds
            .iter()
            .find(|h| &h.version == version)
            .map(|h| h.reason.clone())
    }

    /// The version `current` names, read straight from the link.
    pub fn current(&self) -> Option<Version> {
        self.link("current")
    }

    /// The version `previous` names.
    pub fn previous(&self) -> Option<Version> {
        self.link("previous")
    }

    /// The version `candidate` names (staged for shadow traffic).
    pub fn candidate(&self) -> Option<Version> {
        self.link("candidate")
    }

    /// True while a switch awaits its health check's confirmation.
    pub fn in_probation(&self) -> bool {
        self.state_dir
            .join("models")
            .join(&self.model)
            .join("switch.journal")
            .exists()
    }

    /// The bytes of the current artifact.
    pub fn current_bytes(&self, file: &str) -> Result<Vec<u8>> {
        let path = self
            .state_dir
            .join("models")
            .join(&self.model)
            .join("current")
            .join(file);
        std::fs::read(&path)
            .with_context(|| format!("{}: cannot read {}", self.name, path.display()))
    }

    /// Installed version directories.
    pub fn installed(&self) -> Result<Vec<String>> {
        dir_names(&self.state_dir.join("versions").join(&self.model))
    }

    /// Entries under the staging directory.
    pub fn staging(&self) -> Result<Vec<String>> {
        dir_names(&self.state_dir.join("staging").join(&self.model))
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn dir_names(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                out.push(e?.file_name().to_string_lossy().into_owned());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    out.sort();
    Ok(out)
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends SIGTERM to `child`, if it runs, and waits for it to exit.
fn terminate(child: &mut Option<Child>) -> Result<()> {
    if let Some(mut c) = child.take() {
        let status = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            let _ = c.kill();
        }
        c.wait().context("waiting for a stopped process")?;
    }
    Ok(())
}
