//! `ferryctl publish`: cut the artifact into chunks (hashing it on the way), build and sign the manifest with the publisher key,
//! upload the bytes (unless the coordinator has them), then the signed manifest.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use ferry_coordinator::api::{BlobStored, Published};
use ferry_shared::chunk::{ChunkIndex, ChunkParams, Chunked};
use ferry_shared::manifest::MANIFEST_SCHEMA;
use ferry_shared::{Accelerator, FileName, ModelName, Release, Target, Variant, Version};

use crate::client::Client;
use crate::keys::{sign_release, signer_ids};
use crate::meta::MetaFile;
use crate::output::now;

#[derive(Args)]
pub(crate) struct PublishArgs {
    /// Model name (lowercase letters, digits, `-`, `_`, `.`).
    name: String,
    /// Version (semver, e.g. 1.2.0 or 2.0.0-rc.1).
    version: String,
    /// The artifact file.
    file: PathBuf,
    /// Publisher private key (from `ferryctl keys generate`); repeat it when the root
    /// requires several publishers' signatures.
    #[arg(long, required = true)]
    key: Vec<PathBuf>,
    /// Release metadata (see meta.example.toml).
    #[arg(long)]
    meta: Option<PathBuf>,
    /// Accelerator the artifact needs: cpu, gpu or any.
    #[arg(long, default_value = "any")]
    accelerator: Accelerator,
    /// Target triple it runs on, or any.
    #[arg(long, default_value = "any")]
    target: Target,
    /// Name the file is installed under on devices [default: the file's own name].
    #[arg(long)]
    file_name: Option<String>,
    /// Who publishes, recorded in the manifest [default: $USER].
    #[arg(long)]
    created_by: Option<String>,
    /// Days the signature vouches for the release: after that, devices refuse to install it
    /// until it is re-signed (`ferryctl releases resign`).
    #[arg(long, default_value_t = DEFAULT_LIFETIME_DAYS, value_parser = clap::value_parser!(u32).range(1..=3650))]
    expires_days: u32,
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

pub(crate) async fn run(client: &Client, args: &PublishArgs) -> Result<()> {
    let name: ModelName = args.name.parse()?;
    let version: Version = args.version.parse()?;
    let metadata = match &args.meta {
        Some(path) => MetaFile::load(path)?.into_lineage(),
        None => Default::default(),
    };
    let file_name: FileName = match &args.file_name {
        Some(n) => n.parse()?,
        None => args
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .context("the artifact path has no file name")?
            .parse()
            .context("use --file-name to give the artifact an installable name")?,
    };
    let cut = cut_file(&args.file)?;
    let (hash, size) = (cut.hash, cut.size);
    let created_at = now();
    let release = Release {
        schema: MANIFEST_SCHEMA,
        name: name.clone(),
        version: version.clone(),
        revision: 1,
        expires: created_at + days(args.expires_days),
        created_at,
        created_by: args
            .created_by
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into()),
        variants: vec![Variant {
            target: args.target.clone(),
            accelerator: args.accelerator,
            file_name,
            size,
            hash,
            chunks: cut.index.digest(),
        }],
        metadata,
    };
    let signed = sign_release(&release, &args.key)?;
    let signers = signer_ids(&signed.envelope_bytes);

    let stored: BlobStored = match client
        .get_optional::<BlobStored>(&format!("/blobs/{hash}"))
        .await?
    {
        Some(existing) => existing,
        None => client
            .put_file(&format!("/blobs/{hash}"), &args.file)
            .await
            .context("uploading the artifact")?,
    };
    let published: Published = client
        .post_bytes("/releases", signed.envelope_bytes)
        .await
        .with_context(|| format!("publishing {name} {version}"))?;
    if published.created {
        println!(
            "published {name} {version}: {size} bytes in {} chunks, {} new ({} stored), blake3 {}, signed by {}",
            stored.chunk_count,
            stored.new_chunks,
            crate::releases::human_bytes(stored.new_bytes),
            hash.short(),
            signers
        );
    } else {
        println!("{name} {version} is already published with identical content; nothing changed");
    }
    if published.latest_moved {
        println!("alias `latest` of {name} now points at {version}");
    }
    Ok(())
}
