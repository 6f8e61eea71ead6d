//! Directory artifacts end to end: `ferryctl publish` packs a model directory (as MLflow
//! writes one: MLmodel, weights, environment files), agents install the archive and unpack its
//! tree into the version before the switch, an update travels as chunks and deltas of the
//! archive, and a rollback brings the previous tree back. A release that uses nothing newer
//! stays in manifest format 2, so agents of the previous build still install it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use ferry_coordinator::api::ReleaseView;
use ferry_shared::manifest::ArtifactKind;
use ferry_tests::{Fleet, HEALTH_MAGIC, MODEL, nudged, weights};

const T: Duration = Duration::from_secs(120);

/// An MLflow-like model directory; the health check finds its magic in `MLmodel`, the archive's
/// first member.
fn model_dir(root: &Path, weights: &[u8], requirements: &str) -> Result<()> {
    std::fs::create_dir_all(root.join("data"))?;
    std::fs::write(
        root.join("MLmodel"),
        format!(
            "# {}\nflavors:\n  python_function: {{}}\n",
            String::from_utf8_lossy(HEALTH_MAGIC)
        ),
    )?;
    std::fs::write(root.join("data/model.safetensors"), weights)?;
    std::fs::write(root.join("requirements.txt"), requirements)?;
    Ok(())
}

fn publish_dir(fleet: &Fleet, version: &str, dir: &Path) -> Result<String> {
    fleet.coordinator.ctl(&[
        "publish",
        MODEL,
        version,
        &dir.to_string_lossy(),
        "--key",
        &fleet.key.to_string_lossy(),
    ])
}

#[test]
fn a_directory_is_installed_unpacked_updated_by_deltas_and_rolled_back() -> Result<()> {
    let fleet = Fleet::start(1, None)?;
    let c = &fleet.coordinator;
    let v1_weights = weights(1, 1 << 20);
    let v1 = fleet.dir.join("v1/model");
    model_dir(&v1, &v1_weights, "scikit-learn==1.5.2\n")?;
    let out = publish_dir(&fleet, "1.0.0", &v1)?;
    ensure!(out.contains("published"), "{out}");
    let shown: ReleaseView = c.ctl_json(&["releases", "show", MODEL, "1.0.0"])?;
    let variant = &shown.release.variants[0];
    ensure!(
        variant.kind == ArtifactKind::Directory && variant.file_name.as_str() == "model.tar",
        "{variant:?}"
    );
    ensure!(shown.release.schema == 3, "a directory needs format 3");
    fleet.set_prod("1.0.0", "first")?;
    fleet.wait_all_on("1.0.0", T)?;
    let agent = &fleet.agents[0];
    ensure!(agent.current_bytes("model/data/model.safetensors")? == v1_weights);
    ensure!(agent.current_bytes("model/requirements.txt")? == b"scikit-learn==1.5.2\n");

    // Fine-tuned weights and one changed pin: the update is chunks and deltas of the archive.
    let v2_weights = nudged(&v1_weights, 2, 0.01);
    let v2 = fleet.dir.join("v2/model");
    model_dir(&v2, &v2_weights, "scikit-learn==1.6.0\n")?;
    publish_dir(&fleet, "2.0.0", &v2)?;
    fleet.set_prod("2.0.0", "fine-tuned")?;
    fleet.wait_all_on("2.0.0", T)?;
    ensure!(agent.current_bytes("model/data/model.safetensors")? == v2_weights);
    ensure!(agent.current_bytes("model/requirements.txt")? == b"scikit-learn==1.6.0\n");
    let t = agent.transfer_for("2.0.0")?;
    let archive = std::fs::metadata(
        agent
            .state_dir
            .join("versions")
            .join(MODEL)
            .join("2.0.0/model.tar"),
    )?
    .len();
    // Every weight moved by up to 1 %: what travels is plane deltas, about 60 % of the archive.
    ensure!(
        t.bytes_on_wire < archive * 3 / 4 && t.encodings.keys().any(|e| e != "zstd" && e != "raw"),
        "an update of a directory travels as deltas: {t:?}, archive {archive} bytes"
    );

    // The previous tree is still on disk: a local rollback is instant and offline.
    agent.rollback()?;
    ensure!(agent.current_bytes("model/data/model.safetensors")? == v1_weights);
    ensure!(agent.current_bytes("model/requirements.txt")? == b"scikit-learn==1.5.2\n");

    // A plain file still makes a format-2 release, which older agents install.
    let file = fleet.dir.join("plain.bin");
    std::fs::write(&file, &v1_weights)?;
    c.ctl(&[
        "publish",
        MODEL,
        "3.0.0",
        &file.to_string_lossy(),
        "--key",
        &fleet.key.to_string_lossy(),
    ])?;
    let plain: ReleaseView = c.ctl_json(&["releases", "show", MODEL, "3.0.0"])?;
    ensure!(plain.release.schema == 2, "{:?}", plain.release.schema);
    Ok(())
}
