//! `ferryctl bundle create`: an offline bundle of a release (see `ferry_shared::bundle`) for
//! devices no coordinator reaches, written to a file as the coordinator streams it, checked,
//! then moved into place (a cut transfer leaves no half bundle behind).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ferry_coordinator::outln;
use ferry_shared::bundle::read_header;
use ferry_shared::{Accelerator, ModelName, Version};

use crate::client::{Client, escape};

#[derive(Subcommand)]
pub(crate) enum BundleCommand {
    /// Write a release, its trust metadata and its chunks into one file that
    /// `ferry-agent install-bundle` applies without a coordinator.
    Create(CreateArgs),
}

#[derive(Args)]
pub(crate) struct CreateArgs {
    /// The model's name.
    name: String,
    /// The release's version.
    version: String,
    /// The version the devices run: only what they lack goes in, as deltas against it
    /// (devices on another version cannot use the bundle); without it, every chunk whole.
    #[arg(long)]
    for_version: Option<String>,
    /// Only the builds for this accelerator (`cpu` or `gpu`); default: every build.
    #[arg(long)]
    accelerator: Option<String>,
    /// Days the bundle's snapshot stays valid: a device refuses the bundle after that, by its
    /// own clock.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=365))]
    valid_days: u64,
    /// Seal it for this device (its id, as `devices list` shows): only the devices it is
    /// sealed for can open its chunks, with their identity keys. Repeat it for several.
    #[arg(long)]
    seal_for: Vec<String>,
    /// Seal it for every device whose labels match this cohort selector (`site=plant-7`);
    /// revoked devices get no key.
    #[arg(long)]
    seal_for_cohort: Option<String>,
    /// Where to write it; default `NAME-VERSION[-from-OLD].fbundle` here.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub(crate) async fn run(client: &Client, command: BundleCommand) -> Result<()> {
    match command {
        BundleCommand::Create(args) => create(client, &args).await,
    }
}

async fn create(client: &Client, args: &CreateArgs) -> Result<()> {
    let name: ModelName = args.name.parse()?;
    let version: Version = args.version.parse()?;
    let for_version: Option<Version> = args.for_version.as_deref().map(str::parse).transpose()?;
    let accelerator: Option<Accelerator> = args
        .accelerator
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: String| anyhow::anyhow!("--accelerator: {e}"))?;
    let output = args.output.clone().unwrap_or_else(|| {
        PathBuf::from(match &for_version {
            Some(old) => format!("{name}-{version}-from-{old}.fbundle"),
            None => format!("{name}-{version}.fbundle"),
        })
    });
    let mut path = format!(
        "/releases/{}/{}/bundle?valid_days={}",
        escape(name.as_str()),
        escape(&version.to_string()),
        args.valid_days
    );
    if let Some(old) = &for_version {
        path.push_str(&format!("&for_version={}", escape(&old.to_string())));
    }
    if let Some(a) = accelerator {
        path.push_str(&format!("&accelerator={a}"));
    }
    if !args.seal_for.is_empty() {
        path.push_str(&format!("&seal_for={}", escape(&args.seal_for.join(","))));
    }
    if let Some(cohort) = &args.seal_for_cohort {
        path.push_str(&format!("&seal_for_cohort={}", escape(cohort)));
    }
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let mut response = client
        .get_streamed(&path)
        .await
        .with_context(|| format!("asking for a bundle of {name} {version}"))?;
    let mut size = 0u64;
    while let Some(piece) = response
        .chunk()
        .await
        .context("the bundle's transfer broke off")?
    {
        file.write_all(&piece)
            .with_context(|| format!("writing {}", file.path().display()))?;
        size += piece.len() as u64;
    }
    file.as_file().sync_all()?;
    let header = read_header(file.as_file_mut())
        .with_context(|| format!("the bundle written to {}", file.path().display()))?;
    if header.model != name || header.release.version != version {
        bail!(
            "the coordinator sent a bundle of {} {}",
            header.model,
            header.release.version
        );
    }
    file.persist(&output)
        .with_context(|| format!("cannot move the bundle to {}", output.display()))?;
    let chunks: usize = header.builds.iter().map(|b| b.chunks.len()).sum();
    outln!(
        "wrote {}: {name} {version}{}, {} build(s), {chunks} chunk(s), {} bytes; valid for {} day(s){}",
        shown(&output),
        match &for_version {
            Some(old) => format!(" for devices on {old}"),
            None => String::new(),
        },
        header.builds.len(),
        size,
        args.valid_days,
        match header.sealed_for.len() {
            0 => String::new(),
            n => format!("; sealed for {n} device(s)"),
        }
    );
    Ok(())
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}
