use std::fs;
use std::path::Path;

use super::*;

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// An MLflow-like model directory.
fn model_tree(root: &Path) {
    write(root, "MLmodel", b"flavors:\n  sklearn: {}\n");
    write(root, "model.pkl", &[7u8; 5000]);
    write(root, "requirements.txt", b"scikit-learn==1.5\n");
    write(
        root,
        &format!("deep/{}/weights.bin", "n".repeat(150)),
        b"long",
    );
    fs::create_dir_all(root.join("empty")).unwrap();
}

fn packed(root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    pack(root, &mut out).unwrap();
    out
}

#[test]
fn the_same_tree_packs_to_the_same_bytes_whatever_its_times_and_creation_order() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    model_tree(a.path());
    // The same tree, made in another order, later.
    fs::create_dir_all(b.path().join("empty")).unwrap();
    write(
        b.path(),
        &format!("deep/{}/weights.bin", "n".repeat(150)),
        b"long",
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(b.path(), "requirements.txt", b"scikit-learn==1.5\n");
    write(b.path(), "model.pkl", &[7u8; 5000]);
    write(b.path(), "MLmodel", b"flavors:\n  sklearn: {}\n");
    assert_eq!(packed(a.path()), packed(b.path()));
}

#[test]
fn unpacking_gives_back_the_tree_with_its_executable_bits() {
    let src = tempfile::tempdir().unwrap();
    model_tree(src.path());
    write(src.path(), "bin/run.sh", b"#!/bin/sh\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(
            src.path().join("bin/run.sh"),
            fs::Permissions::from_mode(0o700),
        )
        .unwrap();
    }
    let bytes = packed(src.path());
    let dst = tempfile::tempdir().unwrap();
    let into = dst.path().join("model");
    let tally = unpack(&bytes[..], &into).unwrap();
    assert_eq!(tally.files, 5);
    assert_eq!(tally.dirs, 4, "deep, deep/nnn…, empty, bin: {tally:?}");
    assert_eq!(fs::read(into.join("model.pkl")).unwrap(), vec![7u8; 5000]);
    assert_eq!(
        fs::read(into.join(format!("deep/{}/weights.bin", "n".repeat(150)))).unwrap(),
        b"long"
    );
    assert!(into.join("empty").is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| fs::metadata(into.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("bin/run.sh"), 0o755);
        assert_eq!(mode("MLmodel"), 0o644);
    }
    // And packing what was unpacked gives the same archive again.
    assert_eq!(packed(&into), bytes);
}

#[cfg(unix)]
#[test]
fn a_symbolic_link_is_refused_when_packing() {
    let src = tempfile::tempdir().unwrap();
    model_tree(src.path());
    std::os::unix::fs::symlink("/etc/passwd", src.path().join("link")).unwrap();
    let err = pack(src.path(), Vec::new()).unwrap_err().to_string();
    assert!(err.contains("symbolic links are not packed"), "{err}");
}

/// A one-entry archive whose header names `path` verbatim (no checks by the tar crate).
fn hostile(path: &str, kind: tar::EntryType, body: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    let name = &mut header.as_old_mut().name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    header.set_entry_type(kind);
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    if kind == tar::EntryType::Symlink {
        header.set_link_name("/etc/passwd").unwrap();
    }
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(body);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

#[test]
fn unpacking_refuses_paths_that_leave_the_directory_and_entries_that_are_not_files() {
    let cases = [
        (
            "../escape",
            tar::EntryType::Regular,
            "not a plain relative path",
        ),
        (
            "/etc/ferry-owned",
            tar::EntryType::Regular,
            "not a plain relative path",
        ),
        (
            "a/../../x",
            tar::EntryType::Regular,
            "not a plain relative path",
        ),
        (
            "link",
            tar::EntryType::Symlink,
            "only regular files and directories",
        ),
        (
            "dev",
            tar::EntryType::Char,
            "only regular files and directories",
        ),
        (
            "hard",
            tar::EntryType::Link,
            "only regular files and directories",
        ),
    ];
    for (path, kind, expected) in cases {
        let dst = tempfile::tempdir().unwrap();
        let into = dst.path().join("model");
        let err = unpack(&hostile(path, kind, b"x")[..], &into)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{path}: {err}");
        assert!(!dst.path().join("escape").exists());
        assert!(!Path::new("/etc/ferry-owned").exists());
    }
}

#[test]
fn unpacking_refuses_a_file_named_twice() {
    let mut bytes = Vec::new();
    {
        let mut builder = tar::Builder::new(&mut bytes);
        for body in [&b"first"[..], b"second"] {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, "model.bin", body).unwrap();
        }
        builder.finish().unwrap();
    }
    let dst = tempfile::tempdir().unwrap();
    let err = unpack(&bytes[..], &dst.path().join("m"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("appears twice"), "{err}");
}

#[test]
fn unpacking_into_an_existing_directory_is_refused() {
    let dst = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    model_tree(src.path());
    let err = unpack(&packed(src.path())[..], dst.path()).unwrap_err();
    assert!(matches!(err, ArchiveError::Io { .. }), "{err}");
}
