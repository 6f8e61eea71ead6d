//! Directory artifacts: the deterministic archive a publisher packs a directory into, and the
//! careful unpacking a device does after the archive's signed hash has been checked.
//!
//! The archive is a plain tar (GNU headers for long names) in which everything that could vary
//! between two packings of the same tree is fixed: entries sorted by path, times, owners and
//! names zeroed, modes reduced to `0755` (directories, executables) or `0644`. Packing the same
//! tree twice gives the same bytes, so an unchanged model directory is the same release content
//! and a changed one differs only where its files do: chunking and deltas work on the archive
//! as on any file, members lying whole and in order.
//!
//! Only regular files and directories are packed; a symbolic link, device or socket is refused
//! rather than followed, so what a device unpacks is what the publisher saw. Unpacking accepts
//! only those two entry kinds with plain relative paths, refuses duplicates, and creates
//! nothing outside the target directory.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// Most entries an archive may hold (files and directories).
pub const MAX_ENTRIES: usize = 100_000;
/// Longest path inside an archive, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a directory could not be packed or an archive unpacked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned (inside the tree or the archive).
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// Something in the tree cannot go into a directory artifact.
    #[error("{path}: {reason}")]
    Unpackable {
        /// The entry, relative to the tree.
        path: PathBuf,
        /// Why not.
        reason: &'static str,
    },
    /// The archive holds something a device will not unpack.
    #[error("archive entry {path:?}: {reason}")]
    Refused {
        /// The entry as the archive names it.
        path: String,
        /// Why not.
        reason: String,
    },
}

/// What a packing or unpacking went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Regular files.
    pub files: u64,
    /// Directories below the top.
    pub dirs: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Packs the tree under `dir` (not `dir` itself) into `out`.
pub fn pack(dir: &Path, out: impl Write) -> Result<Tally, ArchiveError> {
    let mut entries = Vec::new();
    collect(dir, Path::new(""), &mut entries)?;
    // Sorted by the path's bytes with `/` separators: the order does not depend on the file
    // system's, and a directory comes before what it holds.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    if entries.len() > MAX_ENTRIES {
        return Err(ArchiveError::Unpackable {
            path: dir.to_owned(),
            reason: "holds more than 100,000 entries",
        });
    }
    let mut tally = Tally::default();
    let mut builder = tar::Builder::new(out);
    for (name, kind) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let full = dir.join(&name);
        match kind {
            Kind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{name}/"), io::empty())
                    .map_err(io_at(&full))?;
                tally.dirs += 1;
            }
            Kind::File { size, executable } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if executable { 0o755 } else { 0o644 });
                header.set_size(size);
                let file = fs::File::open(&full).map_err(io_at(&full))?;
                // A file that changes size while being packed would give a corrupt archive:
                // read exactly what the header says and check nothing is left.
                let mut reader = file.take(size);
                builder
                    .append_data(&mut header, &name, &mut reader)
                    .map_err(io_at(&full))?;
                let mut rest = [0u8; 1];
                if reader.limit() != 0
                    || reader.into_inner().read(&mut rest).map_err(io_at(&full))? != 0
                {
                    return Err(ArchiveError::Unpackable {
                        path: full,
                        reason: "changed size while it was being packed",
                    });
                }
                tally.files += 1;
                tally.bytes += size;
            }
        }
    }
    builder
        .into_inner()
        .map_err(io_at(dir))?
        .flush()
        .map_err(io_at(dir))?;
    Ok(tally)
}

enum Kind {
    Dir,
    File { size: u64, executable: bool },
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<(String, Kind)>) -> Result<(), ArchiveError> {
    let here = root.join(rel);
    for entry in fs::read_dir(&here).map_err(io_at(&here))? {
        let entry = entry.map_err(io_at(&here))?;
        let rel_path = rel.join(entry.file_name());
        let full = root.join(&rel_path);
        let name = rel_path
            .to_str()
            .ok_or(ArchiveError::Unpackable {
                path: full.clone(),
                reason: "its name is not UTF-8",
            })?
            .replace(std::path::MAIN_SEPARATOR, "/");
        if name.len() > MAX_PATH_BYTES {
            return Err(ArchiveError::Unpackable {
                path: full,
                reason: "its path is longer than 4096 bytes",
            });
        }
        let meta = fs::symlink_metadata(&full).map_err(io_at(&full))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            out.push((name, Kind::Dir));
            collect(root, &rel_path, out)?;
        } else if kind.is_file() {
            out.push((
                name,
                Kind::File {
                    size: meta.len(),
                    executable: is_executable(&meta),
                },
            ));
        } else if kind.is_symlink() {
            return Err(ArchiveError::Unpackable {
                path: full,
                reason: "symbolic links are not packed (copy the file it names instead)",
            });
        } else {
            return Err(ArchiveError::Unpackable {
                path: full,
                reason: "only regular files and directories are packed",
            });
        }
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &fs::Metadata) -> bool {
    false
}

/// Unpacks `archive` into `into`, which must not exist yet; its parent must. Files are synced
/// before this returns, so a caller can rename `into`'s parent into place and trust it.
/// On error `into` may hold part of the tree; the caller removes it.
pub fn unpack(archive: impl Read, into: &Path) -> Result<Tally, ArchiveError> {
    fs::create_dir(into).map_err(io_at(into))?;
    let mut tally = Tally::default();
    let mut seen = BTreeSet::new();
    let mut dirs = vec![into.to_owned()];
    let mut archive = tar::Archive::new(archive);
    let entries = archive.entries().map_err(io_at(into))?;
    for entry in entries {
        let mut entry = entry.map_err(io_at(into))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |reason: &str| ArchiveError::Refused {
            path: raw.clone(),
            reason: reason.to_owned(),
        };
        if seen.len() >= MAX_ENTRIES {
            return Err(refuse("the archive holds more than 100,000 entries"));
        }
        let rel = plain_relative(&raw).map_err(&refuse)?;
        if !seen.insert(rel.clone()) {
            return Err(refuse("it appears twice"));
        }
        let target = into.join(&rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                // It may exist already when a file below it came first.
                if !target.is_dir() {
                    fs::create_dir(&target).map_err(io_at(&target))?;
                }
                dirs.push(target);
                tally.dirs += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let executable = entry.header().mode().map_err(io_at(&target))? & 0o111 != 0;
                let mut file = create_file(&target, executable)?;
                let copied = io::copy(&mut entry, &mut file).map_err(io_at(&target))?;
                file.sync_all().map_err(io_at(&target))?;
                tally.files += 1;
                tally.bytes += copied;
            }
            other => {
                return Err(refuse(&format!(
                    "entry kind {other:?}: only regular files and directories are unpacked"
                )));
            }
        }
    }
    // Parents first would do as well; children first keeps each sync cheap.
    for dir in dirs.iter().rev() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(dir))?;
    }
    Ok(tally)
}

/// `raw` (`/`-separated, a trailing `/` allowed) as plain relative components — nothing
/// absolute, no `.` or `..` — or why not: the check for any path a peer names inside a tree.
pub fn plain_relative(raw: &str) -> Result<PathBuf, &'static str> {
    let trimmed = raw.strip_suffix('/').unwrap_or(raw);
    if trimmed.is_empty() {
        return Err("it has no name");
    }
    if trimmed.len() > MAX_PATH_BYTES {
        return Err("its path is longer than 4096 bytes");
    }
    let path = Path::new(trimmed);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            _ => return Err("its path is not a plain relative path"),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("it has no name");
    }
    Ok(out)
}

fn create_file(path: &Path, executable: bool) -> Result<fs::File, ArchiveError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if executable { 0o755 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = executable;
    options.open(path).map_err(io_at(path))
}

#[cfg(test)]
mod tests;
