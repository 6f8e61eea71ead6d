//! One test per attack class, named after it, against a real device: an agent that installed
//! 1.0.0 under root metadata from the real coordinator, which is then replaced on the same
//! address by a hostile one holding what an attacker on the coordinator's host would hold
//! (its TLS identity and online snapshot key; no offline root key, no publisher key, unless a
//! test says one was stolen). Each test shows the refusal, that the device reports it, and
//! that the device stays on its verified version with nothing of the attack on disk and its
//! trust where it was.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_shared::sign::{Keyring, PublicKey, SecretKey, SignedRelease};
use ferry_shared::trust::{ReleaseMeta, Role, RoleKeys, Root, Snapshot, TrustState, sign_metadata};
use ferry_shared::wire::{DesiredRelease, DesiredState, ErrorKind, InstallError, TrustBundle};
use ferry_shared::{Digest, Release, Version};
use ferry_tests::hostile::{HostileCoordinator, stolen_snapshot_key};
use ferry_tests::{AgentSpec, Fleet, MODEL, model_bytes, wait_until};

const MIB: usize = 1024 * 1024;
const WAIT: Duration = Duration::from_secs(60);

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A device on 1.0.0 under root 2, and what an attacker may have gathered.
struct Scene {
    fleet: Fleet,
    /// The offline root keys (threshold 2 of 3).
    root_keys: Vec<SecretKey>,
    /// The fleet's publisher.
    publisher: SecretKey,
    /// A publisher root 1 named and root 2 revoked.
    retired_publisher: SecretKey,
    /// Root 1 and root 2, as signed.
    roots: Vec<Vec<u8>>,
    /// A genuine snapshot from before 3.0.0 was published (lists 1.0.0 and 2.0.0).
    old_snapshot: Vec<u8>,
    /// The genuine snapshot the device accepted last.
    snapshot: Snapshot,
    /// Its bytes.
    snapshot_bytes: Vec<u8>,
    /// The artifact of 1.0.0.
    v1: Vec<u8>,
}

fn root_document(
    version: u64,
    root_keys: &[SecretKey],
    publishers: &[PublicKey],
    snapshot: PublicKey,
) -> Root {
    let role = |keys: Vec<PublicKey>, threshold| RoleKeys {
        keys: keys.iter().map(PublicKey::key_id).collect(),
        threshold,
    };
    let all: Vec<PublicKey> = root_keys
        .iter()
        .map(SecretKey::public)
        .chain(publishers.iter().copied())
        .chain([snapshot])
        .collect();
    Root {
        version,
        expires: now() + 365 * 86_400,
        keys: all.iter().map(|k| (k.key_id(), *k)).collect(),
        root: role(root_keys.iter().map(SecretKey::public).collect(), 2),
        targets: role(publishers.to_vec(), 1),
        snapshot: role(vec![snapshot], 1),
    }
}

impl Scene {
    /// The coordinator holds roots 1 and 2; the device, shipped with root 1, installed 1.0.0
    /// (walking to root 2 on the way); 2.0.0 and 3.0.0 are published. The coordinator still
    /// runs, for tests that need more history before it is taken over.
    fn new() -> Result<Self> {
        let mut fleet = Fleet::start(0, None)?;
        let c = &fleet.coordinator;
        let trust: ferry_coordinator::api::TrustView = c.ctl_json(&["keys", "root", "status"])?;
        let snapshot_key: PublicKey = trust.snapshot_key.parse()?;
        let root_keys = (0..3)
            .map(|_| SecretKey::generate())
            .collect::<Result<Vec<_>, _>>()?;
        let publisher = SecretKey::from_text(&std::fs::read_to_string(&fleet.key)?)?;
        let retired_publisher = SecretKey::generate()?;
        let signers = [&root_keys[0], &root_keys[1]];
        let roots = vec![
            sign_metadata(
                Role::Root,
                &root_document(
                    1,
                    &root_keys,
                    &[publisher.public(), retired_publisher.public()],
                    snapshot_key,
                ),
                &signers,
            ),
            sign_metadata(
                Role::Root,
                &root_document(2, &root_keys, &[publisher.public()], snapshot_key),
                &signers,
            ),
        ];
        for (i, root) in roots.iter().enumerate() {
            let file = fleet.dir.join(format!("root-{}.tuf", i + 1));
            std::fs::write(&file, root)?;
            c.ctl(&["keys", "root", "push", &file.to_string_lossy()])?;
        }
        let v1 = model_bytes(1, 64 * 1024, true);
        fleet.publish("1.0.0", &v1)?;
        fleet.publish("2.0.0", &model_bytes(2, 64 * 1024, true))?;
        let old_snapshot = fleet
            .coordinator
            .get(&format!("/api/v1/trust/snapshot?model={MODEL}"), "viewer")?
            .raw;
        fleet.publish("3.0.0", &model_bytes(3, 64 * 1024, true))?;
        fleet.add_agent(AgentSpec {
            root_file: Some(fleet.dir.join("root-1.tuf")),
            ..AgentSpec::named("device")
        })?;
        fleet.set_prod("1.0.0", "base")?;
        fleet.wait_all_on("1.0.0", WAIT)?;
        let mut scene = Self {
            fleet,
            root_keys,
            publisher,
            retired_publisher,
            roots,
            old_snapshot,
            snapshot: Snapshot {
                version: 0,
                expires: 0,
                releases: Default::default(),
            },
            snapshot_bytes: Vec::new(),
            v1,
        };
        scene.note_snapshot()?;
        ensure!(
            scene.trust()?.root().version == 2,
            "the device walked to root 2"
        );
        Ok(scene)
    }

    /// Takes the genuine snapshot the device holds now as the one to replay.
    fn note_snapshot(&mut self) -> Result<()> {
        let bytes = self
            .fleet
            .coordinator
            .get(&format!("/api/v1/trust/snapshot?model={MODEL}"), "viewer")?
            .raw;
        let mut probe = self.trust()?;
        self.snapshot = probe.update_snapshot(&bytes, now())?;
        let held = self.trust()?.snapshot_version(&MODEL.parse()?);
        ensure!(
            self.snapshot.version == held,
            "the device holds snapshot {held}, the coordinator serves {}",
            self.snapshot.version
        );
        self.snapshot_bytes = bytes;
        Ok(())
    }

    /// What the device trusts, from its `trust.json`.
    fn trust(&self) -> Result<TrustState> {
        let path = self.fleet.agents[0].state_dir.join("trust.json");
        Ok(ferry_agent::stored::decode(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            ferry_agent::stored::TRUST_FORMAT,
        )?)
    }

    /// A genuine release envelope, as the coordinator stores it.
    fn envelope(&self, version: &str) -> Result<Vec<u8>> {
        let reply = self.fleet.coordinator.get(
            &format!("/api/v1/releases/{MODEL}/{version}/envelope"),
            "viewer",
        )?;
        ensure!(reply.status == 200, "{}", reply.body);
        Ok(reply.raw)
    }

    /// The manifest of a genuine release.
    fn manifest(&self, version: &str) -> Result<Release> {
        let ring = Keyring::new([self.publisher.public()]);
        Ok(SignedRelease::verify(&self.envelope(version)?, &ring)?.release)
    }

    /// A snapshot signed with the stolen online key, one version above the device's.
    fn forged_snapshot(&self, expires: u64, listed: &[(&str, &[u8])]) -> Result<Vec<u8>> {
        let key = stolen_snapshot_key(&self.fleet.coordinator.data_dir)?;
        let mut snapshot = self.snapshot.clone();
        snapshot.version += 1;
        snapshot.expires = expires;
        let releases = snapshot.releases.entry(MODEL.parse()?).or_default();
        for (version, envelope) in listed {
            releases.insert(
                version.parse()?,
                ReleaseMeta {
                    hash: Digest::of(envelope),
                    length: envelope.len() as u64,
                },
            );
        }
        Ok(sign_metadata(Role::Snapshot, &snapshot, &[&key]))
    }

    /// Stops the real coordinator, starts the hostile one on its address telling the device
    /// to run `version` as `envelope` under `roots` and `snapshot`, and waits for the device
    /// to refuse it. Checks that the refusal is a signature refusal, that it is reported, and
    /// that the device still runs 1.0.0 (verified bytes, no switch pending, nothing of the
    /// attack fetched or installed).
    fn betray(
        &mut self,
        version: &str,
        envelope: Vec<u8>,
        roots: Vec<Vec<u8>>,
        snapshot: Vec<u8>,
    ) -> Result<InstallError> {
        let agent = &self.fleet.agents[0];
        let installed_before = agent.installed()?;
        let wanted: Version = version.parse()?;
        self.fleet.coordinator.stop();
        let desired = DesiredState {
            model: MODEL.parse()?,
            alias: "prod".parse()?,
            release: Some(DesiredRelease {
                version: wanted.clone(),
                envelope,
            }),
            candidate: None,
            trust: Some(TrustBundle { roots, snapshot }),
        };
        let c = &self.fleet.coordinator;
        let hostile = HostileCoordinator::start(&c.data_dir, c.quic, vec![desired])?;
        let mut refusal = None;
        wait_until(&format!("the device to refuse {version}"), WAIT, || {
            let fetching = !agent.staging()?.is_empty();
            if fetching || agent.current().as_ref() != Some(&"1.0.0".parse()?) {
                return Err(ferry_tests::Hopeless(format!(
                    "the device took the attack: current {:?}, fetching {fetching}",
                    agent.current()
                ))
                .into());
            }
            refusal = agent
                .status()?
                .models
                .first()
                .and_then(|m| m.last_error.clone())
                .filter(|e| e.version == wanted);
            Ok(refusal.is_some())
        })
        .with_context(|| agent.log())?;
        let refusal = refusal.context("no refusal")?;
        ensure!(refusal.kind == ErrorKind::Signature, "{refusal:?}");
        wait_until("the device to report the refusal", WAIT, || {
            Ok(hostile.reports().iter().any(|r| {
                r.models.iter().any(|m| {
                    m.last_error.as_ref().is_some_and(|e| e.version == wanted)
                        && m.active.as_ref().map(ToString::to_string).as_deref() == Some("1.0.0")
                })
            }))
        })?;
        ensure!(agent.is_alive(), "the agent is still running");
        ensure!(
            agent.current().map(|v| v.to_string()).as_deref() == Some("1.0.0"),
            "the device left 1.0.0: {:?}",
            agent.current()
        );
        ensure!(!agent.in_probation(), "no switch is pending");
        ensure!(
            agent.current_bytes("model.bin")? == self.v1,
            "1.0.0's bytes are intact"
        );
        ensure!(
            agent.installed()? == installed_before,
            "installed versions changed: {:?} → {:?}",
            installed_before,
            agent.installed()?
        );
        ensure!(agent.staging()?.is_empty(), "nothing was fetched");
        Ok(refusal)
    }
}

/// A release like `like` but for `version`, signed by `key` (an attacker's build).
fn crafted(like: &Release, version: &str, key: &SecretKey) -> Result<Vec<u8>> {
    let mut release = like.clone();
    release.version = version.parse()?;
    release.variants[0].hash = Digest::of(b"malware");
    Ok(SignedRelease::sign(&release, key)?.envelope_bytes)
}

fn expect(refusal: &InstallError, words: &[&str]) -> Result<()> {
    for word in words {
        ensure!(
            refusal.message.contains(word),
            "the refusal does not say `{word}`: {}",
            refusal.message
        );
    }
    Ok(())
}

#[test]
fn arbitrary_software_signed_by_an_unknown_key_is_refused() -> Result<()> {
    let mut scene = Scene::new()?;
    let rogue = SecretKey::generate()?;
    let malware = crafted(&scene.manifest("2.0.0")?, "6.6.6", &rogue)?;
    let snapshot = scene.forged_snapshot(now() + 3600, &[("6.6.6", &malware)])?;
    let roots = scene.roots.clone();
    let refusal = scene.betray("6.6.6", malware, roots, snapshot)?;
    expect(&refusal, &["release manifest", "0 valid signature"])?;
    ensure!(scene.trust()?.root().version == 2);
    Ok(())
}

#[test]
fn rollback_attack_on_the_root_is_refused() -> Result<()> {
    // Root 2 revoked a publisher key; the attacker, who has it, replays root 1 alone.
    let mut scene = Scene::new()?;
    let retired = SecretKey::from_text(&scene.retired_publisher.to_text())?;
    let release = crafted(&scene.manifest("2.0.0")?, "6.6.6", &retired)?;
    let snapshot = scene.forged_snapshot(now() + 3600, &[("6.6.6", &release)])?;
    let root_1 = vec![scene.roots[0].clone()];
    let refusal = scene.betray("6.6.6", release, root_1, snapshot)?;
    expect(&refusal, &["release manifest", "0 valid signature"])?;
    ensure!(scene.trust()?.root().version == 2, "the device kept root 2");
    Ok(())
}

#[test]
fn a_root_signed_below_its_threshold_is_refused() -> Result<()> {
    // One stolen root key signs a root 3 that names the attacker's publisher key.
    let mut scene = Scene::new()?;
    let rogue = SecretKey::generate()?;
    let snapshot_key = stolen_snapshot_key(&scene.fleet.coordinator.data_dir)?.public();
    let root_3 = sign_metadata(
        Role::Root,
        &root_document(3, &scene.root_keys, &[rogue.public()], snapshot_key),
        &[&scene.root_keys[2]],
    );
    let release = crafted(&scene.manifest("2.0.0")?, "6.6.6", &rogue)?;
    let snapshot = scene.forged_snapshot(now() + 3600, &[("6.6.6", &release)])?;
    let before = scene.trust()?;
    let mut roots = scene.roots.clone();
    roots.push(root_3);
    let refusal = scene.betray("6.6.6", release, roots, snapshot)?;
    expect(
        &refusal,
        &["root metadata", "1 valid signature", "2 needed"],
    )?;
    ensure!(
        scene.trust()? == before,
        "nothing of the bundle was taken (all or nothing)"
    );
    Ok(())
}

#[test]
fn rollback_attack_on_the_snapshot_is_refused() -> Result<()> {
    // A genuine, unexpired but older snapshot, replayed.
    let mut scene = Scene::new()?;
    let before = scene.trust()?;
    let (roots, old) = (scene.roots.clone(), scene.old_snapshot.clone());
    let envelope = scene.envelope("2.0.0")?;
    let refusal = scene.betray("2.0.0", envelope, roots, old)?;
    expect(&refusal, &["snapshot", "rollback"])?;
    ensure!(scene.trust()? == before, "the device's trust did not move");
    Ok(())
}

#[test]
fn freeze_attack_with_an_expired_snapshot_is_refused() -> Result<()> {
    let mut scene = Scene::new()?;
    let before = scene.trust()?;
    let envelope = scene.envelope("2.0.0")?;
    let expired = scene.forged_snapshot(now() - 60, &[])?;
    let roots = scene.roots.clone();
    let refusal = scene.betray("2.0.0", envelope, roots, expired)?;
    expect(&refusal, &["snapshot", "expired", "freeze"])?;
    ensure!(scene.trust()? == before, "the device's trust did not move");
    Ok(())
}

#[test]
fn freeze_attack_with_an_expired_release_is_refused() -> Result<()> {
    // A release the publisher signed long ago, whose signature vouched for it for a day.
    let mut scene = Scene::new()?;
    let mut old = scene.manifest("2.0.0")?;
    old.version = "0.9.0".parse()?;
    old.created_at = now() - 400 * 86_400;
    old.expires = old.created_at + 86_400;
    let envelope = SignedRelease::sign(&old, &scene.publisher)?.envelope_bytes;
    let snapshot = scene.forged_snapshot(now() + 3600, &[("0.9.0", &envelope)])?;
    let roots = scene.roots.clone();
    let refusal = scene.betray("0.9.0", envelope, roots, snapshot)?;
    expect(&refusal, &["release manifest", "expired", "freeze"])?;
    Ok(())
}

#[test]
fn rollback_attack_on_a_release_revision_is_refused() -> Result<()> {
    // 2.0.0 was re-signed to live 30 days instead of a year; the device ran revision 2, then
    // the fleet went back to 1.0.0. The attacker replays revision 1, listed by the stolen key.
    let mut scene = Scene::new()?;
    let revision_1 = scene.envelope("2.0.0")?;
    let out = scene.fleet.resign("2.0.0", 30)?;
    ensure!(out.contains("revision 2"), "{out}");
    scene.fleet.set_prod("2.0.0", "revision 2")?;
    scene.fleet.wait_all_on("2.0.0", WAIT)?;
    scene.fleet.set_prod("1.0.0", "back")?;
    scene.fleet.wait_all_on("1.0.0", WAIT)?;
    scene.note_snapshot()?;
    let model = MODEL.parse()?;
    ensure!(scene.trust()?.release_revision(&model, &"2.0.0".parse()?) == Some(2));
    let snapshot = scene.forged_snapshot(now() + 3600, &[("2.0.0", &revision_1)])?;
    let roots = scene.roots.clone();
    let refusal = scene.betray("2.0.0", revision_1, roots, snapshot)?;
    expect(
        &refusal,
        &[
            "release manifest",
            "revision 1 refused",
            "revision 2 is trusted",
            "rollback",
        ],
    )?;
    ensure!(scene.trust()?.release_revision(&model, &"2.0.0".parse()?) == Some(2));
    Ok(())
}

#[test]
fn mix_and_match_attack_is_refused() -> Result<()> {
    // A manifest the publisher really signed for 2.0.0, but not the one the snapshot lists
    // (say, a build the registry refused as a second 2.0.0).
    let mut scene = Scene::new()?;
    let mut other = scene.manifest("2.0.0")?;
    other.variants[0].hash = Digest::of(b"another build");
    let envelope = SignedRelease::sign(&other, &scene.publisher)?.envelope_bytes;
    ensure!(envelope.len() == scene.envelope("2.0.0")?.len());
    let (roots, snapshot) = (scene.roots.clone(), scene.snapshot_bytes.clone());
    let refusal = scene.betray("2.0.0", envelope, roots, snapshot)?;
    expect(&refusal, &["does not match the snapshot", "mix-and-match"])?;
    Ok(())
}

#[test]
fn endless_data_attack_is_refused() -> Result<()> {
    let mut scene = Scene::new()?;
    let mut envelope = scene.envelope("2.0.0")?;
    envelope.extend(std::iter::repeat_n(0u8, MIB / 2));
    let (roots, snapshot) = (scene.roots.clone(), scene.snapshot_bytes.clone());
    let refusal = scene.betray("2.0.0", envelope, roots, snapshot)?;
    expect(&refusal, &["endless data"])?;
    Ok(())
}

// Hostile devices: an enrolled device asking the real coordinator for what is not its own.

/// The chunked form of `bytes`: its index and whole-file hash.
fn chunked(bytes: &[u8]) -> ferry_shared::chunk::Chunked {
    ferry_shared::chunk::ChunkIndex::build(bytes, ferry_shared::chunk::ChunkParams::DEFAULT)
        .unwrap_or_else(|e| panic!("chunking in memory cannot fail: {e}"))
}

/// A real agent on `MODEL@prod` 1.0.0, and another model, `secret`, published beside it.
fn two_models() -> Result<(Fleet, Vec<u8>, Vec<u8>)> {
    let fleet = Fleet::start(1, None)?;
    let ours = model_bytes(1, MIB, true);
    fleet.ship("1.0.0", &ours, WAIT)?;
    let secret = model_bytes(9, MIB, true);
    let file = fleet.dir.join("secret.bin");
    std::fs::write(&file, &secret)?;
    fleet.coordinator.ctl(&[
        "publish",
        "secret",
        "1.0.0",
        &file.to_string_lossy(),
        "--key",
        &fleet.key.to_string_lossy(),
        "--file-name",
        "model.bin",
    ])?;
    fleet
        .coordinator
        .ctl(&["alias", "set", "secret", "prod", "1.0.0"])?;
    Ok((fleet, ours, secret))
}

fn follows_prod() -> Vec<ferry_shared::wire::Follow> {
    vec![ferry_shared::wire::Follow {
        model: MODEL.parse().unwrap_or_else(|_| unreachable!()),
        alias: "prod".parse().unwrap_or_else(|_| unreachable!()),
    }]
}

/// The rest of the fleet is served as before: a new release reaches the real agent.
fn others_still_served(fleet: &Fleet, seed: u64, version: &str) -> Result<()> {
    fleet.ship(version, &model_bytes(seed, MIB, true), WAIT)
}

#[test]
fn a_device_cannot_fetch_another_models_artifact() -> Result<()> {
    let (fleet, ours, secret) = two_models()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let key = SecretKey::from_seed(&[41; 32]);
    let device = runtime.block_on(ferry_tests::raw_device::RawDevice::admit(
        &fleet,
        &key,
        follows_prod(),
        Default::default(),
    ))?;
    let secret = chunked(&secret);
    let refused = runtime.block_on(device.index(secret.hash))?;
    let Err((_, message)) = refused else {
        anyhow::bail!("the device read another model's chunk index");
    };
    ensure!(
        message.contains("not part of a release this device may run"),
        "{message}"
    );
    let wants = (0..secret.index.chunks.len() as u32)
        .map(|ordinal| ferry_shared::wire::ChunkWant {
            ordinal,
            reference: None,
        })
        .collect();
    ensure!(
        runtime
            .block_on(device.chunks(secret.hash, wants))?
            .is_err(),
        "the device read another model's chunks"
    );
    // What it may run, it may read.
    let ours = chunked(&ours);
    ensure!(runtime.block_on(device.index(ours.hash))?.is_ok());
    let status = fleet.coordinator.fleet_status()?;
    ensure!(status.fetches_refused >= 2, "{}", status.fetches_refused);
    drop(device);
    others_still_served(&fleet, 2, "1.1.0")
}

#[test]
fn a_device_asking_for_thousands_of_deltas_gets_stored_chunks_once_its_budget_is_spent()
-> Result<()> {
    let (fleet, ours, _) = two_models()?;
    let newer = model_bytes(2, MIB, true);
    fleet.ship("1.1.0", &newer, WAIT)?;
    let (old, new) = (chunked(&ours), chunked(&newer));
    let runtime = tokio::runtime::Runtime::new()?;

    // A device that holds nothing asks for deltas against 1.0.0: it gets stored chunks.
    let empty = runtime.block_on(ferry_tests::raw_device::RawDevice::admit(
        &fleet,
        &SecretKey::from_seed(&[42; 32]),
        follows_prod(),
        Default::default(),
    ))?;
    let window = |at: u64| {
        Some(ferry_shared::wire::WindowRef {
            file: old.hash,
            offset: 0,
            len: old.size.min(ferry_shared::wire::MAX_WINDOW),
            at,
        })
    };
    let want = |ordinal: u32, at: u64| ferry_shared::wire::ChunkWant {
        ordinal,
        reference: window(at),
    };
    let replies = runtime
        .block_on(empty.chunks(new.hash, vec![want(0, 0), want(0, 7)]))?
        .map_err(|(_, m)| anyhow::anyhow!("refused: {m}"))?;
    for (reply, _) in &replies {
        let ferry_shared::wire::ChunkReply::Chunk { encoding, .. } = reply else {
            anyhow::bail!("not served: {reply:?}");
        };
        ensure!(
            !encoding.needs_reference(),
            "a delta for a device that holds nothing"
        );
    }

    // A device claiming 1.0.0 asks for every chunk again and again against shifted windows.
    let report = ferry_shared::wire::DeviceReport {
        models: vec![ferry_shared::wire::ModelReport {
            model: MODEL.parse()?,
            active: Some("1.0.0".parse()?),
            previous: None,
            candidate: None,
            phase: ferry_shared::wire::UpdatePhase::Idle,
            last_error: None,
        }],
        ..Default::default()
    };
    let greedy = runtime.block_on(ferry_tests::raw_device::RawDevice::admit(
        &fleet,
        &SecretKey::from_seed(&[43; 32]),
        follows_prod(),
        report,
    ))?;
    let chunks = new.index.chunks.len() as u32;
    let before = fleet.coordinator.fleet_status()?;
    let rounds = 1000 / chunks.max(1);
    for round in 0..rounds {
        let wants = (0..chunks)
            .map(|o| want(o, u64::from(round) * 13 + 1))
            .collect();
        runtime
            .block_on(greedy.chunks(new.hash, wants))?
            .map_err(|(_, m)| anyhow::anyhow!("refused: {m}"))?;
    }
    let after = fleet.coordinator.fleet_status()?;
    let encoded = after.deltas_encoded - before.deltas_encoded;
    let budget = ferry_coordinator::agents::encode_budget::FRESH_PER_CHUNK * u64::from(chunks);
    ensure!(
        encoded <= budget,
        "{encoded} deltas encoded for one device, over its budget of {budget} ({rounds} rounds of {chunks})"
    );
    ensure!(
        after.encodes_refused > before.encodes_refused,
        "no encode was refused"
    );
    drop((empty, greedy));
    others_still_served(&fleet, 3, "1.2.0")
}

// Hostile mirrors: a device configured with a mirror that lies, runs on or stalls. A mirror
// is never trusted: the device refuses what it sends, drops it for the rest of the download,
// and takes the chunks from the coordinator instead. Nothing is lost: the verified version is
// installed all the same.

/// A fleet with one device whose own mirror, over the coordinator's frames, behaves as
/// `behaviour` (each request given 2 s); the device installs 1.0.0 (of `len` bytes). Returns
/// the mirror's request count and what the download moved.
fn through_a_hostile_mirror(
    behaviour: ferry_tests::mirror::Behaviour,
    len: usize,
) -> Result<(usize, ferry_agent::state::TransferStats)> {
    let mut fleet = Fleet::start(0, None)?;
    let v1 = model_bytes(31, len, true);
    fleet.publish("1.0.0", &v1)?;
    let mirror = ferry_tests::mirror::HostileMirror::start(
        &fleet.coordinator.data_dir.join("chunks"),
        behaviour,
    )?;
    let mut spec = AgentSpec::named("mirrored");
    spec.top = format!("mirrors = [\"{}\"]\nmirror_timeout_secs = 2", mirror.base());
    fleet.add_agent(spec)?;
    fleet.set_prod("1.0.0", "start")?;
    fleet.wait_all_on("1.0.0", WAIT)?;
    let agent = &fleet.agents[0];
    ensure!(
        agent.current_bytes("model.bin")? == v1,
        "the verified version is installed"
    );
    ensure!(agent.staging()?.is_empty(), "nothing of the attack left");
    let transfer = agent.transfer_for("1.0.0")?;
    ensure!(
        transfer.mirrored.failures >= 1 && transfer.chunks_fetched >= 1,
        "the mirror failed and the coordinator stepped in: {transfer:?}"
    );
    ensure!(
        transfer.attempts == 1 && transfer.chunks_refetched == 0,
        "a mirror's failure costs no attempt and no retry: {transfer:?}"
    );
    Ok((mirror.requests(), transfer))
}

#[test]
fn a_mirror_sending_wrong_bytes_is_refused_and_dropped() -> Result<()> {
    use ferry_tests::mirror::Behaviour;
    // Honest for its first two answers, then bytes that are not the chunk.
    let (requests, t) = through_a_hostile_mirror(Behaviour::LiesAfter(2), 24 * MIB)?;
    let chunks = ferry_tests::chunks_of(&model_bytes(31, 24 * MIB, true))
        .chunks
        .len();
    ensure!(
        t.mirrored.chunks == 2,
        "the two honest answers were kept: {t:?}"
    );
    // Four requests go at once, and the next starts as each answer is checked: a few more
    // than the honest two and the first lie, never the whole artifact.
    ensure!(
        requests <= 8 && requests < chunks,
        "dropped once it lied: {requests} requests for {chunks} chunks"
    );
    Ok(())
}

#[test]
fn a_mirror_sending_endless_bytes_is_cut_off_and_dropped() -> Result<()> {
    use ferry_tests::mirror::Behaviour;
    let (requests, t) = through_a_hostile_mirror(Behaviour::Endless, 3 * MIB)?;
    ensure!(t.mirrored.chunks == 0, "{t:?}");
    ensure!(
        requests <= 4,
        "dropped after its first answers (four go at once): {requests}"
    );
    Ok(())
}

#[test]
fn a_slow_loris_mirror_is_given_up_on_and_dropped() -> Result<()> {
    use ferry_tests::mirror::Behaviour;
    let (requests, t) = through_a_hostile_mirror(Behaviour::SlowLoris, 3 * MIB)?;
    ensure!(t.mirrored.chunks == 0, "{t:?}");
    ensure!(
        requests <= 4,
        "dropped after its first answers (four go at once): {requests}"
    );
    Ok(())
}
