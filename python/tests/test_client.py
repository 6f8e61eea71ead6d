"""The Python client against a real coordinator and real agents (see conftest.py)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

import ferry
from ferry.publish import meta_toml

from .conftest import Coordinator, binary, eventually

MODEL = "detector"


def client_of(node: Coordinator) -> ferry.Client:
    return ferry.Client(node.url, node.token, actor="pytest", ferryctl=binary("ferryctl"))


def weights(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


META = {
    "code_commit": "9f2c1e7",
    "owner": "ml-vision",
    "changelog": 'Retrained on "January" data;\nrecall +1.2 points',
    "input_schema": "frames/v2",
    "output_schema": "boxes/v1",
    "dataset": {"id": "street-frames", "version": "2026-11", "hash": "sha256:5e3b0c44"},
    "hyperparameters": {"learning_rate": 0.001, "batch_size": 64, "optimizer": "adamw"},
    "framework": {"name": "onnxruntime", "version": "1.17.1"},
    "metrics": {"f1": 0.934, "p95_latency_ms": 12.5},
}


SIZE = 6 * 1024 * 1024 + 123


@pytest.fixture(scope="module")
def first(coordinator, tmp_path_factory):
    """detector 1.0.0, published once for the module's tests: what publish answered, the
    progress it reported, and the artifact."""
    artifact = write(tmp_path_factory.mktemp("v1") / "model.bin", weights(1, SIZE))
    seen = []
    published = client_of(coordinator).publish(
        MODEL, "1.0.0", artifact, key=coordinator.key, meta=META, reason="first", progress=seen.append
    )
    return published, seen, artifact


def test_publish_signs_uploads_reports_progress_and_keeps_the_lineage(coordinator, first, tmp_path):
    client = client_of(coordinator)
    size = SIZE
    published, seen, artifact = first
    assert published.created and (published.name, published.version) == (MODEL, "1.0.0")
    assert seen, "progress was reported"
    assert seen[-1].file.endswith("model.bin") and seen[-1].sent == seen[-1].total == size
    assert all(a.sent <= b.sent for a, b in zip(seen, seen[1:])), "progress only grows"

    view = client.release(MODEL, "1.0.0")
    assert view.stage == "development" and view.published_by.startswith("pytest")
    (variant,) = view.release.variants
    assert (variant.file_name, variant.size) == ("model.bin", size)
    meta = view.release.metadata
    assert meta["code_commit"] == "9f2c1e7" and meta["owner"] == "ml-vision"
    assert meta["changelog"] == META["changelog"]
    assert meta["dataset"] == {"id": "street-frames", "version": "2026-11", "hash": "sha256:5e3b0c44"}
    assert meta["hyperparameters"]["batch_size"] == "64"
    assert meta["metrics"] == {"f1": 0.934, "p95_latency_ms": 12.5}
    assert "1.0.0" in [r.version for r in client.releases(MODEL)]

    # The same bytes again: nothing new. Other bytes under the same version: refused, and
    # the exception carries the coordinator's reason.
    again = client.publish(MODEL, "1.0.0", artifact, key=coordinator.key, meta=META)
    assert not again.created
    other = write(tmp_path / "other.bin", weights(2, 4096))
    with pytest.raises(ferry.Conflict) as refused:
        client.publish(MODEL, "1.0.0", other, key=coordinator.key, file_name="model.bin")
    assert refused.value.status == 409 and "1.0.0" in refused.value.message


def test_a_progress_callback_that_raises_stops_the_publish_and_loses_nothing(coordinator, tmp_path):
    client = client_of(coordinator)
    artifact = write(tmp_path / "model.bin", weights(7, 8 * 1024 * 1024))

    class Stop(Exception):
        pass

    def stop(_):
        raise Stop("the pipeline was cancelled")

    # Before the fix the reader thread died with the callback and ferryctl, its stderr pipe
    # full, blocked forever; now the callback's own exception comes back.
    with pytest.raises(Stop):
        client.publish(MODEL, "0.9.0", artifact, key=coordinator.key, progress=stop)
    again = client.publish(MODEL, "0.9.0", artifact, key=coordinator.key)
    assert again.version == "0.9.0"
    assert client.release(MODEL, "0.9.0").release.variants[0].size == 8 * 1024 * 1024


def test_builds_for_hardware_carry_their_requirements(coordinator, tmp_path):
    client = client_of(coordinator)
    engine = write(tmp_path / "model.engine", weights(4, 4096))
    onnx = write(tmp_path / "model.onnx", weights(5, 4096))
    client.publish(
        "hw-model",
        "1.0.0",
        key=coordinator.key,
        file_name="model.bin",
        variants={"gpu[cuda >= 12.2, compute_capability >= 8.7]": engine, "cpu": onnx},
        cpu_fallback=True,
    )
    shown = {v.accelerator: v.requires for v in client.release("hw-model", "1.0.0").release.variants}
    assert shown == {"gpu": ("cuda >= 12.2", "compute_capability >= 8.7"), "cpu": ()}
    client.publish("hw-model", "1.1.0", onnx, key=coordinator.key, requires=["cpu.avx2"])
    assert client.release("hw-model", "1.1.0").release.variants[0].requires == ("cpu.avx2",)
    with pytest.raises(ferry.PublishError):
        client.publish("hw-model", "1.2.0", key=coordinator.key, variants={"cpu": onnx}, requires=["cpu.avx2"])


def test_a_publish_with_a_key_the_coordinator_does_not_trust_is_refused(coordinator, tmp_path):
    stranger = tmp_path / "stranger.key"
    coordinator.ctl("keys", "generate", "--out", str(stranger))
    artifact = write(tmp_path / "model.bin", weights(3, 4096))
    with pytest.raises(ferry.BadRequest) as refused:
        client_of(coordinator).publish(MODEL, "0.0.1", artifact, key=stranger)
    assert refused.value.status == 422 and "not trusted" in refused.value.message
    with pytest.raises(ferry.NotFound):
        client_of(coordinator).release(MODEL, "0.0.1")


def test_aliases_stages_and_approvals_move_and_refusals_are_typed(coordinator, first):
    client = client_of(coordinator)
    changed = client.set_alias(MODEL, "staging", "1.0.0", reason="try it")
    assert changed.alias.version == "1.0.0" and changed.previous is None
    assert changed.alias.reason == "try it"
    assert {(a.alias, a.version) for a in client.aliases(MODEL)} >= {("staging", "1.0.0")}

    moved = client.move_stage(MODEL, "1.0.0", "staging", reason="validated offline")
    assert moved.moved and (moved.from_stage, moved.to_stage) == ("development", "staging")
    assert client.stage(MODEL, "1.0.0").stage == "staging"
    approved = client.approve(MODEL, "1.0.0", reason="looks good")
    assert len(approved.approvals) == 1

    with pytest.raises(ferry.NotFound) as missing:
        client.release(MODEL, "9.9.9")
    assert "9.9.9" in missing.value.message
    with pytest.raises(ferry.BadRequest):
        client.move_stage(MODEL, "1.0.0", "nowhere")
    with pytest.raises(ferry.BadRequest):
        client.set_alias(MODEL, "staging", "not a version")


def test_a_rollout_reaches_real_agents_and_the_fleet_views_show_it(coordinator, agents, first, tmp_path):
    client = client_of(coordinator)
    client.set_alias(MODEL, "prod", "1.0.0", reason="first fleet")
    eventually(
        lambda: any(
            m.model == MODEL and any(v.version == "1.0.0" and v.devices == 2 for v in m.versions)
            for m in client.fleet_status().models
        ),
        what="both agents on 1.0.0",
    )
    status = client.fleet_status()
    assert status.devices_total == 2 and status.devices_connected == 2

    update = bytearray(weights(1, SIZE))
    update[100:200] = bytes(100)
    client.publish(MODEL, "1.1.0", write(tmp_path / "model.bin", bytes(update)), key=coordinator.key)
    check = client.check_rollout(MODEL, "1.1.0", waves=[ferry.Wave(50), ferry.Wave(100)], rollout_id="py-rollout")
    assert check.devices == 2 and check.waves[-1] == (100.0, False, 2)
    assert check.misfits == [] and check.misfit_counts == {}
    view = client.create_rollout(
        MODEL,
        "1.1.0",
        # Each wave waits for its devices' installs (a wave without gates need not).
        waves=[
            ferry.Wave(50, gates=[ferry.Gate("InstallFailures", 0.0, 1)]),
            ferry.Wave(100, gates=[ferry.Gate("InstallFailures", 0.0, 2)]),
        ],
        rollout_id="py-rollout",
        reason="pytest",
    )
    assert view.id == "py-rollout" and view.phase == "Running"
    changes = []
    final = client.wait_rollout("py-rollout", timeout=120, poll=0.3, on_change=changes.append)
    assert final.phase == "Completed" and final.finished
    assert final.devices.cohort == 2 and final.devices.on_target == 2
    assert changes and changes[-1].phase == "Completed"
    assert any(r.id == "py-rollout" for r in client.rollouts())
    assert {(a.alias, a.version) for a in client.aliases(MODEL)} >= {("prod", "1.1.0")}

    report = eventually(
        lambda: (lambda r: r if r.models and r.models[0].overall.versions[0].devices == 2 else None)(
            client.fragmentation(by="site")
        ),
        what="both agents reported 1.1.0",
    )
    (model,) = [m for m in report.models if m.model == MODEL]
    assert report.by == "site"
    assert [(v.version, v.devices) for v in model.overall.versions] == [("1.1.0", 2)]
    assert model.overall.index == 0.0
    assert sorted(c.cohort for c in model.cohorts) == ["lab", "plant"]


def test_waiting_on_a_rollout_that_holds_times_out_with_its_last_state(coordinator, first, tmp_path):
    client = client_of(coordinator)
    if not any(a.alias == "prod" for a in client.aliases(MODEL)):
        # Run alone: the rollout needs an alias to roll along.
        client.set_alias(MODEL, "prod", "1.0.0", reason="held-rollout test")
    artifact = write(tmp_path / "model.bin", weights(5, 8192))
    client.publish(MODEL, "1.2.0", artifact, key=coordinator.key, file_name="model.bin")
    client.create_rollout(
        MODEL, "1.2.0", waves=[ferry.Wave(100, approval=True, gates=[])], rollout_id="py-held"
    )
    with pytest.raises(ferry.Timeout) as held:
        client.wait_rollout("py-held", timeout=1.5, poll=0.3)
    assert held.value.last is not None and held.value.last.phase == "AwaitingApproval"
    aborted = client.abort_rollout("py-held", reason="pytest stops it")
    assert aborted.phase == "Aborted" and aborted.reason and "pytest" in aborted.reason


def test_an_experiment_is_created_extended_and_rejected_with_reasons(coordinator, first, tmp_path):
    client = client_of(coordinator)
    if not any(a.alias == "prod" for a in client.aliases(MODEL)):
        client.set_alias(MODEL, "prod", "1.0.0", reason="experiment test")
    champion = next(a.version for a in client.aliases(MODEL) if a.alias == "prod")
    artifact = write(tmp_path / "model.bin", weights(9, 8192))
    client.publish(MODEL, "1.9.0", artifact, key=coordinator.key, file_name="model.bin")
    # Its own cohort, so no rollout of another test stands in its way.
    view = client.create_experiment(
        MODEL, "1.9.0", duration_secs=600, percent=50, cohort="site=lab",
        experiment_id="py-ab", reason="pytest",
    )
    assert (view.phase, view.champion, view.challenger) == ("running", champion, "1.9.0")
    assert view.percent == 50.0
    assert {r.metric for r in view.readout} >= {"error_rate", "p50_latency_ms", "p95_latency_ms"}
    with pytest.raises(ferry.ApiError) as early:
        client.decide_experiment("py-ab", "promote", reason="too soon")
    assert "--early" in early.value.message
    extended = client.decide_experiment("py-ab", "extend", reason="more traffic", extend_secs=60)
    assert extended.ends_at >= view.ends_at + 60 and extended.phase == "running"
    rejected = client.decide_experiment("py-ab", "reject", reason="pytest rejects it")
    assert rejected.phase == "decided"
    assert [d["verdict"] for d in client.experiment("py-ab").decisions] == ["extend", "reject"]
    assert any(e.id == "py-ab" for e in client.experiments())
    assert client.rollout("py-ab").phase == "RolledBack"


def test_a_wrong_token_and_a_dead_address_are_told_apart(coordinator):
    with pytest.raises(ferry.Unauthorized) as refused:
        ferry.Client(coordinator.url, "not-a-token").releases()
    assert refused.value.status == 401 and refused.value.message
    with pytest.raises(ferry.Unreachable):
        ferry.Client("http://127.0.0.1:9", "x", timeout=5).releases()
    with pytest.raises(ferry.FerryError):
        ferry.Client("ftp://example.com")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib reads TOML from 3.11 on")
def test_metadata_written_as_toml_reads_back_as_given():
    import tomllib

    awkward = {
        "changelog": 'quotes " and \\ backslashes\n\ttabs, ünïcödé, \x01 control',
        "parents": ["1.0.0", "0.9.0"],
        "metrics": {"nan-free": 1.5, "int": 3},
        "hyperparameters": {"key with spaces": "v", "flag": True},
    }
    assert tomllib.loads(meta_toml(awkward)) == awkward


def test_gates_round_trip_through_the_api_json_drift_included():
    for json in (
        {"kind": "InstallFailures", "threshold": 0.0, "min_samples": 1},
        {"kind": {"Custom": "score"}, "threshold": 1.2, "min_samples": 100},
        {"kind": {"Drift": {"metric": "score", "statistic": "psi"}}, "threshold": 0.3, "min_samples": 500},
    ):
        gate = ferry.Gate.from_json(json)
        assert gate.to_json() == json
    assert ferry.Gate("Drift:ks:score", 0.2, 100).to_json()["kind"] == {
        "Drift": {"metric": "score", "statistic": "ks"}
    }


def test_datasets_are_written_as_an_array_of_tables():
    import tomllib

    meta = {"datasets": [{"name": "train", "role": "training"}, {"name": "holdout", "role": "eval"}],
            "source": {"registry": "mlflow", "uri": "http://m/#/models/x/versions/1"}}
    assert tomllib.loads(meta_toml(meta)) == meta
