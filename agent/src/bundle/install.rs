//! Installing an admitted release from a bundle instead of the network: the same staging,
//! local copies, per-chunk checks, whole-file hash, unpacking and promotion as a download
//! ([`crate::fetch`]), with the bundle's payloads in place of the coordinator's answers
//! (opened first, when the bundle is sealed, with the key wrapped for this device).
//! Synchronous (disk and CPU work); the daemon runs it on a blocking thread.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ferry_shared::bundle::{BundleHeader, BundledBuild, BundledChunk, read_header};
use ferry_shared::chunk::ChunkIndex;
use ferry_shared::seal::ContentKey;
use ferry_shared::variant_choice::DeviceProfile;
use ferry_shared::wire::{ChunkWant, DeviceId, ErrorKind, InstallError};
use ferry_shared::{Digest, ModelName, SecretKey};

use crate::assemble::{AssembleError, Assembly};
use crate::fetch::{
    DownloadFailure, DownloadOutcome, ENVELOPE_FILE, INDEX_FILE, already_installed, disk_shortfall,
    local_sources,
};
use crate::fsutil::{fsync_dir, write_atomic};
use crate::slots::SlotLayout;
use crate::updater::{Admitted, Retry};

/// Opens the bundle at `path` and reads its header.
pub fn open(path: &Path) -> Result<(File, BundleHeader), String> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let header = read_header(&mut file).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((file, header))
}

/// Installs `target` of `model` from the bundle at `path` into the installed versions: a
/// no-op when it is installed. A failure is never retried from the bundle (the daemon drops
/// it): what the bundle could not provide, the network may.
pub fn install_from_bundle(
    layout: &SlotLayout,
    model: &ModelName,
    target: &Admitted,
    profile: &DeviceProfile,
    path: &Path,
    identity: &SecretKey,
) -> Result<DownloadOutcome, DownloadFailure> {
    let fail = |kind, message: String| DownloadFailure {
        error: InstallError {
            version: target.version.clone(),
            kind,
            message: format!("from bundle {}: {message}", path.display()),
            at: crate::unix_now(),
        },
        retry: Retry::Later,
    };
    let disk = |path: &Path, e: &dyn std::fmt::Display| {
        fail(ErrorKind::Disk, format!("{}: {e}", path.display()))
    };
    if already_installed(layout, model, target).map_err(|(dir, e)| disk(&dir, &e))? {
        return Ok(DownloadOutcome {
            already_installed: true,
        });
    }
    let (file, header) = open(path).map_err(|e| fail(ErrorKind::Download, e))?;
    if &header.model != model || header.release.version != target.version {
        return Err(fail(
            ErrorKind::Download,
            format!(
                "it carries {} {}, not {model} {}",
                header.model, header.release.version, target.version
            ),
        ));
    }
    let key = content_key(&header, identity).map_err(|why| fail(ErrorKind::Signature, why))?;
    let variant = &target.variant;
    let build = header
        .builds
        .iter()
        .find(|b| b.file == variant.hash)
        .ok_or_else(|| {
            fail(
                ErrorKind::IncompatibleHardware,
                format!(
                    "it has no build of {} for this device (its {} build for {}); make one with --accelerator {}",
                    target.version, variant.accelerator, variant.target, variant.accelerator
                ),
            )
        })?;
    let index = ChunkIndex::from_canonical_bytes(&build.index, variant.size)
        .ok()
        .filter(|i| i.digest() == variant.chunks)
        .ok_or_else(|| {
            fail(
                ErrorKind::Integrity,
                "its chunk index does not match the signed manifest".into(),
            )
        })?;
    let staging = layout.staging_dir(model, &target.version);
    if let Some(why) = disk_shortfall(layout, target, &staging) {
        return Err(fail(ErrorKind::Disk, why));
    }
    std::fs::create_dir_all(&staging).map_err(|e| disk(&staging, &e))?;
    for (name, bytes) in [
        (ENVELOPE_FILE, target.envelope.as_slice()),
        (INDEX_FILE, build.index.as_slice()),
    ] {
        let at = staging.join(name);
        write_atomic(&at, bytes).map_err(|e| disk(&at, &e))?;
    }
    let sources = local_sources(layout, model, profile, &index);
    let held: HashSet<Digest> = sources.iter().map(|s| s.file).collect();
    let file_path = staging.join(variant.file_name.as_str());
    let bundle = Payloads {
        file: &file,
        build,
        header: &header,
        key: key.as_ref(),
    };
    let assembled = assemble(&file_path, target, index, sources, &bundle, &held);
    let asm = assembled.map_err(|(kind, why)| fail(kind, why))?;
    let settle = |r: Result<(), AssembleError>| {
        r.map_err(|e| {
            let (kind, why) = classified(e);
            fail(kind, why)
        })
    };
    settle(asm.sync())?;
    settle(asm.verify(variant.size, &variant.hash))?;
    crate::unpack::unpack_staged(&staging, variant, &[ENVELOPE_FILE, INDEX_FILE])
        .map_err(|e| fail(ErrorKind::Disk, e.to_string()))?;
    fsync_dir(&staging).map_err(|e| disk(&staging, &e))?;
    layout
        .promote(model, &target.version)
        .map_err(|e| fail(ErrorKind::Disk, e.to_string()))?;
    Ok(DownloadOutcome {
        already_installed: false,
    })
}

/// The content key a sealed bundle's payloads open with, unwrapped with this device's
/// identity key; `None` for a bundle that is not sealed.
pub fn content_key(
    header: &BundleHeader,
    identity: &SecretKey,
) -> Result<Option<ContentKey>, String> {
    if header.sealed_for.is_empty() {
        return Ok(None);
    }
    let me = DeviceId::of(&identity.public());
    let wrapped = header.key_for(&me).ok_or_else(|| {
        format!(
            "it is sealed for {} other device(s), not for this one ({me})",
            header.sealed_for.len()
        )
    })?;
    ContentKey::unwrap(wrapped, identity)
        .map(Some)
        .map_err(|e| format!("the key sealed for this device does not open: {e}"))
}

/// Where a build's payloads come from: the bundle file, and the key they open with.
struct Payloads<'a> {
    file: &'a File,
    build: &'a BundledBuild,
    header: &'a BundleHeader,
    key: Option<&'a ContentKey>,
}

/// Assembles the staging file: local copies first, then every chunk still missing from the
/// bundle's payloads.
fn assemble(
    path: &Path,
    target: &Admitted,
    index: ChunkIndex,
    sources: Vec<crate::assemble::LocalSource>,
    bundle: &Payloads<'_>,
    held: &HashSet<Digest>,
) -> Result<Assembly, (ErrorKind, String)> {
    let (build, header) = (bundle.build, bundle.header);
    let failed = classified;
    let variant = &target.variant;
    let (mut asm, _) =
        Assembly::open(path, variant.hash, index, variant.size, sources).map_err(failed)?;
    let copies = asm.take_copies().map_err(failed)?;
    let copied = copies.run().map_err(failed)?;
    asm.record_copies(&copied);
    let payloads: HashMap<Digest, &BundledChunk> =
        build.chunks.iter().map(|c| (c.hash, c)).collect();
    let made_for = || {
        header.for_version.as_ref().map_or_else(
            || "every device".to_string(),
            |v| format!("devices holding {v}"),
        )
    };
    let mut payload = Vec::new();
    let mut decoded = Vec::new();
    loop {
        let wants = asm.wants();
        if wants.is_empty() {
            return Ok(asm);
        }
        for want in wants {
            let chunk = asm
                .chunk_hash(want.ordinal)
                .and_then(|hash| Some((hash, *payloads.get(&hash)?)));
            let Some((hash, chunk)) = chunk else {
                return Err((
                    ErrorKind::Download,
                    format!(
                        "it lacks chunk {} (made for {}, and this device's copy of it is missing or damaged)",
                        want.ordinal,
                        made_for()
                    ),
                ));
            };
            if let Some(window) = chunk.reference
                && !held.contains(&window.file)
            {
                return Err((
                    ErrorKind::Download,
                    format!(
                        "chunk {} is a delta against a version this device does not hold (made for {})",
                        want.ordinal,
                        made_for()
                    ),
                ));
            }
            payload.resize(chunk.len as usize, 0);
            bundle
                .file
                .read_exact_at(&mut payload, chunk.offset)
                .map_err(|e| (ErrorKind::Download, format!("reading it: {e}")))?;
            if let Some(key) = bundle.key {
                payload = key
                    .open(&hash, &payload)
                    .map_err(|e| (ErrorKind::Integrity, format!("chunk {}: {e}", want.ordinal)))?;
            }
            let want = ChunkWant {
                ordinal: want.ordinal,
                reference: chunk.reference,
            };
            let bytes = asm
                .decode(
                    &want,
                    chunk.encoding,
                    &payload,
                    std::mem::take(&mut decoded),
                )
                .map_err(failed)?;
            asm.place(want.ordinal, &bytes).map_err(failed)?;
            decoded = bytes;
        }
    }
}

/// What an assembly error is reported as: a disk failure, or bytes that do not verify.
fn classified(e: AssembleError) -> (ErrorKind, String) {
    match e {
        AssembleError::Disk { path, source } => {
            (ErrorKind::Disk, format!("{}: {source}", path.display()))
        }
        e => (ErrorKind::Integrity, e.to_string()),
    }
}
