//! `ferryctl publish`: cut each artifact into chunks (hashing it on the way), build and sign
//! the manifest with the publisher key, upload the bytes (unless the coordinator has them),
//! then the signed manifest. A release holds one artifact (`FILE`, with `--accelerator` and
//! `--target`) or several builds of the model (`--variant ACCEL[/TARGET]=FILE`, repeated).
//! A directory given as FILE is packed into a deterministic archive ([`ferry_shared::archive`])
//! that devices unpack beside it: a directory artifact.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result};
use clap::Args;
use ferry_coordinator::api::{BlobStored, Published};
use ferry_coordinator::outln;
use ferry_shared::chunk::{ChunkIndex, ChunkParams, Chunked};
use ferry_shared::manifest::{ArtifactKind, Lineage, MANIFEST_SCHEMA};
use ferry_shared::requirement::Requirement;
use ferry_shared::{Accelerator, FileName, ModelName, Release, Target, Variant, Version};

use crate::client::{Client, escape};
use crate::exit::Usage;
use crate::keys::{sign_release, signer_ids};
use crate::meta::MetaFile;
use crate::output::now;
use crate::releases::human_bytes;

#[derive(Args)]
pub(crate) struct PublishArgs {
    /// Model name (lowercase letters, digits, `-`, `_`, `.`).
    name: String,
    /// Version (semver, e.g. 1.2.0 or 2.0.0-rc.1).
    version: String,
    /// The artifact file, or a directory to ship whole (or give --variant, once per build).
    #[arg(required_unless_present = "variant", conflicts_with = "variant")]
    file: Option<PathBuf>,
    /// One build of the model: ACCEL[/TARGET][\[REQ, …\]]=FILE, e.g. `gpu=model-cuda.onnx`,
    /// `cpu/aarch64-unknown-linux-gnu=model-arm.onnx` or
    /// `gpu[cuda >= 12.2, compute_capability >= 8.7]=model-orin.engine`; repeat it for each
    /// build. Requirements name device facts (hardware labels) the build needs.
    #[arg(long)]
    variant: Vec<VariantSpec>,
    /// With FILE: a fact the device must have to run it, e.g. `cuda >= 12.2`,
    /// `compute_capability >= 8.7`, `cpu.avx2`; repeat for several.
    #[arg(long = "requires", conflicts_with = "variant")]
    requires: Vec<Requirement>,
    /// Let a GPU device run the CPU build when the release has no GPU build for it.
    #[arg(long)]
    cpu_fallback: bool,
    /// Publisher private key (from `ferryctl keys generate`); repeat it when the root
    /// requires several publishers' signatures.
    #[arg(long, required = true)]
    key: Vec<PathBuf>,
    /// Release metadata (see meta.example.toml).
    #[arg(long)]
    meta: Option<PathBuf>,
    /// With FILE: the accelerator it needs (cpu, gpu or any).
    #[arg(long, default_value = "any", conflicts_with = "variant")]
    accelerator: Accelerator,
    /// With FILE: the target triple it runs on, or any.
    #[arg(long, default_value = "any", conflicts_with = "variant")]
    target: Target,
    /// Name every build is installed under on devices [default: each file's own name; for a
    /// directory, its name with `.tar`].
    #[arg(long)]
    file_name: Option<String>,
    /// Who publishes, recorded in the manifest [default: $USER].
    #[arg(long)]
    created_by: Option<String>,
    /// Why, for the audit trail.
    #[arg(long)]
    reason: Option<String>,
    /// Days the signature vouches for the release: after that, devices refuse to install it
    /// until it is re-signed (`ferryctl releases resign`).
    #[arg(long, default_value_t = DEFAULT_LIFETIME_DAYS, value_parser = clap::value_parser!(u32).range(1..=3650))]
    expires_days: u32,
    /// Print the coordinator's answer as JSON (for programs that run ferryctl).
    #[arg(long)]
    json: bool,
    /// Report each upload's progress on stderr as JSON lines,
    /// `{"progress":{"file":…,"sent":…,"total":…}}`, instead of a bar.
    #[arg(long)]
    progress_lines: bool,
}

/// One build given on the command line.
#[derive(Clone, Debug)]
pub(crate) struct VariantSpec {
    pub(crate) accelerator: Accelerator,
    pub(crate) target: Target,
    pub(crate) requires: Vec<Requirement>,
    pub(crate) file: PathBuf,
}

impl FromStr for VariantSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let expected = || format!("{s:?}: expected ACCEL[/TARGET][[REQ, …]]=FILE");
        // Requirements hold `=` themselves (`cuda >= 12.2`): the platform ends at `[` or at the
        // first `=`, whichever comes first.
        let (platform, requires, file) = match (s.find('['), s.find('=')) {
            (Some(open), Some(eq)) if open < eq => {
                let close = s[open..].find(']').ok_or_else(expected)? + open;
                let file = s[close + 1..].strip_prefix('=').ok_or_else(expected)?;
                let requires = s[open + 1..close]
                    .split(',')
                    .filter(|r| !r.trim().is_empty())
                    .map(|r| r.parse::<Requirement>().map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                (&s[..open], requires, file)
            }
            (_, Some(eq)) => (&s[..eq], Vec::new(), &s[eq + 1..]),
            (_, None) => return Err(expected()),
        };
        let (accelerator, target) = match platform.split_once('/') {
            Some((a, t)) => (a.parse()?, t.parse()?),
            None => (platform.parse()?, Target::Any),
        };
        if file.is_empty() {
            return Err(format!("{s:?}: no file after `=`"));
        }
        Ok(Self {
            accelerator,
            target,
            requires,
            file: file.into(),
        })
    }
}

/// How long a release's signature vouches for it unless told otherwise: a year.
pub(crate) const DEFAULT_LIFETIME_DAYS: u32 = 365;

/// Seconds in `days` days.
pub(crate) fn days(days: u32) -> u64 {
    u64::from(days) * 86_400
}

/// Cuts the artifact into chunks (with the bounds the coordinator uses) in one pass that also
/// gives its hash and size.
fn cut_file(path: &Path) -> Result<Chunked> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    ChunkIndex::build(std::io::BufReader::new(file), ChunkParams::DEFAULT)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// The name a build is installed under.
fn installed_name(file_name: Option<&str>, artifact: &Artifact) -> Result<FileName> {
    let name = match file_name {
        Some(n) => n.to_owned(),
        None => {
            let own = artifact
                .given
                .file_name()
                .and_then(|n| n.to_str())
                .context("the artifact path has no file name")?;
            match artifact.kind {
                ArtifactKind::File => own.to_owned(),
                ArtifactKind::Directory => format!("{own}.tar"),
            }
        }
    };
    let name: FileName = name
        .parse()
        .context("use --file-name to give the artifact an installable name")?;
    if artifact.kind == ArtifactKind::Directory && name.unpacked_dir().is_none() {
        anyhow::bail!("{name}: a directory is installed as NAME.tar (unpacked into NAME)");
    }
    Ok(name)
}

/// One build's bytes, ready to cut and upload.
pub(crate) struct Artifact {
    /// What the user named.
    pub(crate) given: PathBuf,
    /// The file whose bytes are the artifact: `given`, or the archive a directory was packed
    /// into.
    pub(crate) path: PathBuf,
    pub(crate) kind: ArtifactKind,
    /// Holds the packed archive until the upload is done.
    _packed: Option<tempfile::TempPath>,
}

impl Artifact {
    /// A file as it is, or a directory packed into a temporary archive (in `$TMPDIR`).
    pub(crate) fn prepare(given: &Path) -> Result<Self> {
        let meta =
            std::fs::metadata(given).with_context(|| format!("cannot read {}", given.display()))?;
        if !meta.is_dir() {
            return Ok(Self {
                given: given.to_owned(),
                path: given.to_owned(),
                kind: ArtifactKind::File,
                _packed: None,
            });
        }
        let temp = tempfile::Builder::new()
            .prefix("ferry-pack-")
            .suffix(".tar")
            .tempfile()
            .context("cannot create a temporary file to pack the directory into ($TMPDIR)")?;
        let (file, path) = temp.into_parts();
        ferry_shared::archive::pack(given, std::io::BufWriter::new(file))
            .with_context(|| format!("packing {}", given.display()))?;
        Ok(Self {
            given: given.to_owned(),
            path: path.to_path_buf(),
            kind: ArtifactKind::Directory,
            _packed: Some(path),
        })
    }
}

pub(crate) async fn run(client: &Client, args: &PublishArgs) -> Result<()> {
    let metadata = match &args.meta {
        Some(path) => MetaFile::load(path)?.into_lineage(),
        None => Default::default(),
    };
    let specs = match &args.file {
        Some(file) => vec![VariantSpec {
            accelerator: args.accelerator,
            target: args.target.clone(),
            requires: args.requires.clone(),
            file: file.clone(),
        }],
        None => args.variant.clone(),
    };
    if specs.is_empty() {
        return Err(Usage("give the artifact FILE, or --variant once per build".into()).into());
    }
    let publication = Publication {
        name: args.name.parse()?,
        version: args.version.parse()?,
        specs,
        cpu_fallback: args.cpu_fallback,
        file_name: args.file_name.clone(),
        keys: args.key.clone(),
        metadata,
        created_by: args.created_by.clone(),
        reason: args.reason.clone(),
        expires_days: args.expires_days,
        json: args.json,
        progress_lines: args.progress_lines,
        quiet: false,
    };
    publish(client, &publication).await.map(|_| ())
}

/// Everything a publish needs, from the command line or from an import.
pub(crate) struct Publication {
    pub(crate) name: ModelName,
    pub(crate) version: Version,
    pub(crate) specs: Vec<VariantSpec>,
    pub(crate) cpu_fallback: bool,
    /// Name every build is installed under; `None`: each file's own.
    pub(crate) file_name: Option<String>,
    pub(crate) keys: Vec<PathBuf>,
    pub(crate) metadata: Lineage,
    /// `None`: `$USER`.
    pub(crate) created_by: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) expires_days: u32,
    pub(crate) json: bool,
    pub(crate) progress_lines: bool,
    /// Print nothing on success (the caller reports).
    pub(crate) quiet: bool,
}

/// Cuts, signs, uploads and publishes; prints what happened (or the API's JSON answer).
pub(crate) async fn publish(client: &Client, p: &Publication) -> Result<Published> {
    let (name, version) = (&p.name, &p.version);
    let mut variants = Vec::new();
    let mut artifacts = Vec::new();
    for spec in &p.specs {
        let artifact = Artifact::prepare(&spec.file)?;
        let cut = cut_file(&artifact.path)?;
        variants.push(Variant {
            target: spec.target.clone(),
            accelerator: spec.accelerator,
            file_name: installed_name(p.file_name.as_deref(), &artifact)?,
            size: cut.size,
            hash: cut.hash,
            chunks: cut.index.digest(),
            kind: artifact.kind,
            requires: spec.requires.clone(),
        });
        artifacts.push(artifact);
    }
    let created_at = now();
    let mut release = Release {
        schema: MANIFEST_SCHEMA,
        name: name.clone(),
        version: version.clone(),
        revision: 1,
        expires: created_at + days(p.expires_days),
        created_at,
        created_by: p
            .created_by
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into()),
        variants,
        cpu_fallback: p.cpu_fallback,
        metadata: p.metadata.clone(),
    };
    // The oldest format that holds it: devices still on an older build install it too.
    release.schema = release.needed_schema();
    let signed = sign_release(&release, &p.keys)?;
    let signers = signer_ids(&signed.envelope_bytes);

    let mut uploaded = Vec::new();
    for (artifact, variant) in artifacts.iter().zip(&release.variants) {
        let hash = variant.hash;
        let stored: BlobStored = match client
            .get_optional::<BlobStored>(&format!("/blobs/{hash}"))
            .await?
        {
            Some(existing) => {
                if p.progress_lines {
                    // Nothing to send: the whole artifact is there.
                    let meter = crate::progress::Meter::upload(variant.size, &artifact.given, true);
                    meter.set_position(variant.size);
                }
                existing
            }
            None => crate::upload::upload(
                client,
                &hash,
                &artifact.path,
                &artifact.given,
                p.progress_lines,
            )
            .await
            .with_context(|| format!("uploading {}", artifact.given.display()))?,
        };
        uploaded.push((variant, stored));
    }
    let path = match &p.reason {
        Some(reason) => format!("/releases?reason={}", escape(reason)),
        None => "/releases".into(),
    };
    let published: Published = client
        .post_bytes(&path, signed.envelope_bytes)
        .await
        .with_context(|| format!("publishing {name} {version}"))?;
    if p.quiet {
        return Ok(published);
    }
    if p.json {
        crate::output::json(&published)?;
        return Ok(published);
    }
    if published.created {
        outln!("published {name} {version}, signed by {signers}");
        for (variant, stored) in uploaded {
            outln!(
                "  {}/{}: {} bytes in {} chunks, {} new ({} stored), blake3 {}",
                variant.target,
                variant.accelerator,
                variant.size,
                stored.chunk_count,
                stored.new_chunks,
                human_bytes(stored.new_bytes),
                variant.hash.short(),
            );
        }
    } else {
        outln!("{name} {version} is already published with identical content; nothing changed");
    }
    if published.latest_moved {
        outln!("alias `latest` of {name} now points at {version}");
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_specs_with_requirements() {
        let spec: VariantSpec =
            "gpu/aarch64-unknown-linux-gnu[cuda >= 12.2, compute_capability>=8.7]=m.engine"
                .parse()
                .unwrap();
        assert_eq!(spec.accelerator, Accelerator::Gpu);
        assert_eq!(spec.target.to_string(), "aarch64-unknown-linux-gnu");
        let requires: Vec<String> = spec.requires.iter().map(ToString::to_string).collect();
        assert_eq!(requires, ["cuda >= 12.2", "compute_capability >= 8.7"]);
        assert_eq!(spec.file, PathBuf::from("m.engine"));
        let plain: VariantSpec = "cpu=model=v2.onnx".parse().unwrap();
        assert!(plain.requires.is_empty());
        assert_eq!(plain.file, PathBuf::from("model=v2.onnx"));
        for bad in [
            "gpu[cuda >= 12=m",
            "gpu[cuda >= 12]m",
            "gpu[CUDA]=m",
            "gpu[cuda>=12]=",
            "gpu",
        ] {
            assert!(bad.parse::<VariantSpec>().is_err(), "{bad}");
        }
    }
}
