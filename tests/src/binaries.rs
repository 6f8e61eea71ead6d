//! Finds (and builds, when needed) the real binaries, in the same target directory and profile
//! as the running test or demo, so a test never runs a stale agent. `FERRY_AGENT_BIN` names
//! another agent binary to run instead of the one built here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};

/// Paths of the three binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `ferry-coordinator`.
    pub coordinator: PathBuf,
    /// `ferry-agent`.
    pub agent: PathBuf,
    /// `ferryctl`.
    pub ctl: PathBuf,
}

static BUILT: OnceLock<Result<Binaries, String>> = OnceLock::new();

/// Whether [`Binaries::get`] takes the binaries as they are instead of building them.
static PREBUILT: AtomicBool = AtomicBool::new(false);

impl Binaries {
    /// From now on in this process, [`Binaries::get`] uses the binaries already in the target
    /// directory instead of building them first: a bench does not rebuild the workspace
    /// unasked (in the release profile that takes minutes). Call it before the first `get`.
    pub fn use_prebuilt() {
        PREBUILT.store(true, Ordering::SeqCst);
    }

    /// Builds the workspace binaries once per process (a no-op when up to date) and returns
    /// their paths.
    pub fn get() -> Result<Binaries> {
        BUILT
            .get_or_init(|| build().map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(anyhow::Error::msg)
    }
}

fn build() -> Result<Binaries> {
    let exe = std::env::current_exe().context("cannot locate the running executable")?;
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let mut profile_dir = exe.parent().context("executable without a directory")?;
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir = profile_dir.parent().context("deps without a parent")?;
    }
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("unnamed profile directory")?
        .to_owned();
    let target_dir = profile_dir
        .parent()
        .context("profile directory without a parent")?;
    if std::env::var_os("FERRY_SKIP_BUILD").is_none() && !PREBUILT.load(Ordering::SeqCst) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut cmd = Command::new(cargo);
        // Cargo gives a test process the variables it gives the crate being built
        // (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, …). Build scripts such as ring's watch those, so
        // passing them on would make this nested build rebuild half the tree, every time.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let per_crate = key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_MANIFEST_")
                || key.starts_with("CARGO_CFG_")
                || key.starts_with("CARGO_BIN_")
                || matches!(
                    key.as_ref(),
                    "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "OUT_DIR"
                );
            if per_crate {
                cmd.env_remove(key.as_ref());
            }
        }
        cmd.args([
            "build",
            "--quiet",
            "--workspace",
            "--bins",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
        if profile == "release" {
            cmd.arg("--release");
        } else if profile != "debug" {
            cmd.args(["--profile", &profile]);
        }
        let status = cmd
            .status()
            .context("cannot run cargo to build the binaries")?;
        if !status.success() {
            bail!("building the Ferry binaries failed ({status})");
        }
    }
    let bin = |name: &str| -> Result<PathBuf> {
        let path = profile_dir.join(name);
        if !path.exists() {
            let flag = match profile.as_str() {
                "debug" => String::new(),
                "release" => " --release".into(),
                other => format!(" --profile {other}"),
            };
            bail!(
                "{} is missing: build the binaries first (cargo build{flag} --workspace --bins), or let the bench build them (--build)",
                path.display()
            );
        }
        Ok(path)
    };
    // Another agent build (the `device` profile, a cross-built one under emulation) can be
    // tested against this coordinator by naming it.
    let agent = match std::env::var_os("FERRY_AGENT_BIN") {
        Some(path) => PathBuf::from(path),
        None => bin("ferry-agent")?,
    };
    Ok(Binaries {
        coordinator: bin("ferry-coordinator")?,
        agent,
        ctl: bin("ferryctl")?,
    })
}
