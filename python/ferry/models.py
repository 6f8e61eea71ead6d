"""What the admin API answers, as dataclasses.

Each class reads the fields this client knows from the API's JSON and ignores the others, so a
newer coordinator that adds fields does not break an older client; ``raw`` keeps the whole
answer for what is not modelled here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

Json = Mapping[str, Any]

#: Rollout phases after which nothing changes any more.
FINAL_PHASES = frozenset({"Completed", "Aborted", "RolledBack"})


def _opt_str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Variant:
    """One build of a release: where it runs, what it installs as, its size and hash."""

    target: str
    accelerator: str
    file_name: str
    size: int
    hash: str
    #: ``file``, or ``directory``: an archive devices unpack beside itself (``model.tar`` →
    #: ``model/``).
    kind: str = "file"
    #: What the device must have to run it (``cuda >= 12.2``, ``cpu.avx2``).
    requires: Tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: Json) -> "Variant":
        return cls(
            target=str(d.get("target", "any")),
            accelerator=str(d.get("accelerator", "any")),
            file_name=str(d["file_name"]),
            size=int(d["size"]),
            hash=str(d["hash"]),
            kind=str(d.get("kind", "file")),
            requires=tuple(str(r) for r in d.get("requires", [])),
        )


@dataclass(frozen=True)
class Release:
    """A signed release manifest's content."""

    name: str
    version: str
    revision: int
    created_at: int
    created_by: str
    expires: int
    variants: List[Variant]
    cpu_fallback: bool
    #: Lineage: code_commit, hyperparameters, metrics, datasets, interface, tags, source, …
    metadata: Dict[str, Any]
    #: The manifest format it was signed in.
    schema: int = 2

    @classmethod
    def from_json(cls, d: Json) -> "Release":
        return cls(
            schema=int(d.get("schema", 2)),
            name=str(d["name"]),
            version=str(d["version"]),
            revision=int(d.get("revision", 1)),
            created_at=int(d.get("created_at", 0)),
            created_by=str(d.get("created_by", "")),
            expires=int(d.get("expires", 0)),
            variants=[Variant.from_json(v) for v in d.get("variants", [])],
            cpu_fallback=bool(d.get("cpu_fallback", False)),
            metadata=dict(d.get("metadata") or {}),
        )


@dataclass(frozen=True)
class ReleaseView:
    """A release as the registry lists it: the manifest, who published it, where it stands."""

    release: Release
    published_at: int
    published_by: str
    signer: str
    aliases: List[str]
    stage: str
    purged_at: Optional[int]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.release.name

    @property
    def version(self) -> str:
        return self.release.version

    @classmethod
    def from_json(cls, d: Json) -> "ReleaseView":
        return cls(
            release=Release.from_json(d["release"]),
            published_at=int(d.get("published_at", 0)),
            published_by=str(d.get("published_by", "")),
            signer=str(d.get("signer", "")),
            aliases=[str(a) for a in d.get("aliases", [])],
            stage=str(d.get("stage", "")),
            purged_at=d.get("purged_at"),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Published:
    """What a publish did."""

    name: str
    version: str
    created: bool
    latest_moved: bool
    revision: int
    resigned_from: Optional[int]

    @classmethod
    def from_json(cls, d: Json) -> "Published":
        return cls(
            name=str(d["name"]),
            version=str(d["version"]),
            created=bool(d["created"]),
            latest_moved=bool(d.get("latest_moved", False)),
            revision=int(d.get("revision", 1)),
            resigned_from=d.get("resigned_from"),
        )


@dataclass(frozen=True)
class Imported:
    """What an import from MLflow did: the Ferry release it made and where it came from."""

    name: str
    version: str
    created: bool
    mlflow_model: str
    mlflow_version: str
    files: int
    bytes: int
    alias: Optional[str]
    stage: Optional[str]

    @classmethod
    def from_json(cls, d: Json) -> "Imported":
        return cls(
            name=str(d["name"]),
            version=str(d["version"]),
            created=bool(d["created"]),
            mlflow_model=str(d["mlflow_model"]),
            mlflow_version=str(d["mlflow_version"]),
            files=int(d.get("files", 0)),
            bytes=int(d.get("bytes", 0)),
            alias=_opt_str(d.get("alias")),
            stage=_opt_str(d.get("stage")),
        )


@dataclass(frozen=True)
class AliasView:
    """An alias and its last move."""

    model: str
    alias: str
    version: str
    set_at: int
    set_by: str
    reason: Optional[str]

    @classmethod
    def from_json(cls, d: Json) -> "AliasView":
        return cls(
            model=str(d["model"]),
            alias=str(d["alias"]),
            version=str(d["version"]),
            set_at=int(d.get("set_at", 0)),
            set_by=str(d.get("set_by", "")),
            reason=_opt_str(d.get("reason")),
        )


@dataclass(frozen=True)
class AliasChanged:
    """An alias move: the new state and where it pointed before."""

    alias: AliasView
    previous: Optional[str]

    @classmethod
    def from_json(cls, d: Json) -> "AliasChanged":
        return cls(alias=AliasView.from_json(d["alias"]), previous=_opt_str(d.get("previous")))


@dataclass(frozen=True)
class StageView:
    """Where a release stands in its lifecycle, where it may go, who approved it."""

    model: str
    version: str
    stage: str
    since: int
    next: List[str]
    approvals: List[Dict[str, Any]]
    history: List[Dict[str, Any]]

    @classmethod
    def from_json(cls, d: Json) -> "StageView":
        return cls(
            model=str(d["model"]),
            version=str(d["version"]),
            stage=str(d["stage"]),
            since=int(d.get("since", 0)),
            next=[str(s) for s in d.get("next", [])],
            approvals=[dict(a) for a in d.get("approvals", [])],
            history=[dict(h) for h in d.get("history", [])],
        )


@dataclass(frozen=True)
class TransitionView:
    """A stage move asked for: its checks and whether it moved."""

    model: str
    version: str
    from_stage: str
    to_stage: str
    moved: bool
    checks: List[Dict[str, Any]]
    prod_moved: bool
    rollout: Optional[str]
    error: Optional[str]

    @classmethod
    def from_json(cls, d: Json) -> "TransitionView":
        return cls(
            model=str(d["model"]),
            version=str(d["version"]),
            from_stage=str(d["from"]),
            to_stage=str(d["to"]),
            moved=bool(d["moved"]),
            checks=[dict(c) for c in d.get("checks", [])],
            prod_moved=bool(d.get("prod_moved", False)),
            rollout=_opt_str(d.get("rollout")),
            error=_opt_str(d.get("error")),
        )


@dataclass(frozen=True)
class Gate:
    """A rollout gate: what it measures (``InstallFailures``, ``Custom:NAME``,
    ``Drift:psi:NAME`` or ``Drift:ks:NAME`` for the drift of a reported value's distribution,
    …), its threshold and the sample it needs before it decides."""

    kind: str
    threshold: float
    min_samples: int

    @classmethod
    def from_json(cls, d: Json) -> "Gate":
        kind = d["kind"]
        if isinstance(kind, Mapping):
            # An enum variant with data, e.g. {"Custom": "score"} or
            # {"Drift": {"metric": "score", "statistic": "psi"}}.
            ((variant, value),) = kind.items()
            if isinstance(value, Mapping):
                value = f"{value.get('statistic')}:{value.get('metric')}"
            kind = f"{variant}:{value}"
        return cls(kind=str(kind), threshold=float(d["threshold"]), min_samples=int(d["min_samples"]))

    def to_json(self) -> Dict[str, Any]:
        variant, _, value = self.kind.partition(":")
        kind: Any = variant
        if variant == "Drift":
            statistic, _, metric = value.partition(":")
            kind = {variant: {"metric": metric, "statistic": statistic}}
        elif value:
            kind = {variant: value}
        return {"kind": kind, "threshold": self.threshold, "min_samples": self.min_samples}


@dataclass(frozen=True)
class GateReport:
    """A gate of the current wave: its value against its threshold, and its verdict."""

    gate: Gate
    value: Optional[float]
    samples: int
    verdict: str

    @classmethod
    def from_json(cls, d: Json) -> "GateReport":
        verdict = d.get("verdict")
        if isinstance(verdict, Mapping):
            verdict = next(iter(verdict))
        return cls(
            gate=Gate.from_json(d["gate"]),
            value=d.get("value"),
            samples=int(d.get("samples", 0)),
            verdict=str(verdict),
        )


@dataclass(frozen=True)
class Wave:
    """One wave of a rollout plan: the cumulative percent of the cohort it covers, how long
    it bakes, whether an approver must let it start, and its gates (the defaults when
    ``None``)."""

    percent: float
    bake_secs: int = 0
    approval: bool = False
    shadow: bool = False
    gates: Optional[List[Gate]] = None

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "percent": self.percent,
            "bake_secs": self.bake_secs,
            "approval": self.approval,
            "shadow": self.shadow,
        }
        if self.gates is not None:
            out["gates"] = [g.to_json() for g in self.gates]
        return out


@dataclass(frozen=True)
class ReadoutRow:
    """One metric of an experiment's readout: challenger minus champion, with its 95 %
    interval when one can be given, and whether the interval leaves out zero."""

    metric: str
    champion: Optional[float]
    challenger: Optional[float]
    difference: Optional[float]
    interval: Optional[Tuple[float, float]]
    significant: bool
    samples: Tuple[int, int]

    @classmethod
    def from_json(cls, d: Json) -> "ReadoutRow":
        interval = d.get("interval")
        samples = d.get("samples") or (0, 0)
        return cls(
            metric=str(d["metric"]),
            champion=d.get("champion"),
            challenger=d.get("challenger"),
            difference=d.get("difference"),
            interval=None if interval is None else (float(interval[0]), float(interval[1])),
            significant=bool(d.get("significant", False)),
            samples=(int(samples[0]), int(samples[1])),
        )


@dataclass(frozen=True)
class ExperimentView:
    """An A/B experiment: its arms, readout and decisions."""

    id: str
    model: str
    phase: str
    champion: str
    challenger: str
    percent: float
    ends_at: int
    readout: List[ReadoutRow]
    decisions: List[Dict[str, Any]]
    outcome: Optional[str]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Json) -> "ExperimentView":
        return cls(
            id=str(d["id"]),
            model=str(d["model"]),
            phase=str(d["phase"]),
            champion=str(d["champion"]["version"]),
            challenger=str(d["challenger"]["version"]),
            percent=float(d.get("percent", 0.0)),
            ends_at=int(d.get("ends_at", 0)),
            readout=[ReadoutRow.from_json(r) for r in d.get("readout", [])],
            decisions=[dict(x) for x in d.get("decisions", [])],
            outcome=_opt_str(d.get("outcome")),
            raw=dict(d),
        )


@dataclass(frozen=True)
class RolloutDevices:
    """A rollout's cohort, by where each device stands."""

    cohort: int
    targeted: int
    on_target: int
    shadowing: int
    install_failed: int
    health_failed: int

    @classmethod
    def from_json(cls, d: Json) -> "RolloutDevices":
        return cls(**{k: int(d.get(k, 0)) for k in (
            "cohort", "targeted", "on_target", "shadowing", "install_failed", "health_failed")})


@dataclass(frozen=True)
class RolloutView:
    """A rollout: its phase, waves, gates and devices."""

    id: str
    model: str
    version: str
    alias: str
    cohort: str
    phase: str
    paused: bool
    waves_in_force: int
    waves: List[float]
    reason: Optional[str]
    created_by: str
    created_at: int
    updated_at: int
    gates: List[GateReport]
    devices: RolloutDevices
    stragglers_total: int
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """Whether the rollout reached a phase it never leaves."""
        return self.phase in FINAL_PHASES

    @classmethod
    def from_json(cls, d: Json) -> "RolloutView":
        return cls(
            id=str(d["id"]),
            model=str(d["model"]),
            version=str(d["version"]),
            alias=str(d.get("alias", "")),
            cohort=str(d.get("cohort", "")),
            phase=str(d["phase"]),
            paused=bool(d.get("paused", False)),
            waves_in_force=int(d.get("waves_in_force", 0)),
            waves=[float(w) for w in d.get("waves", [])],
            reason=_opt_str(d.get("reason")),
            created_by=str(d.get("created_by", "")),
            created_at=int(d.get("created_at", 0)),
            updated_at=int(d.get("updated_at", 0)),
            gates=[GateReport.from_json(g) for g in d.get("gates", [])],
            devices=RolloutDevices.from_json(d.get("devices") or {}),
            stragglers_total=int(d.get("stragglers_total", 0)),
            raw=dict(d),
        )


@dataclass(frozen=True)
class DeviceMisfit:
    """A device a checked rollout would reach that could not take its release."""

    device: str
    name: Optional[str]
    #: ``schema``, ``hardware`` or ``disk``.
    kind: str
    detail: str
    #: The first wave that would reach it (0-based).
    wave: int

    @classmethod
    def from_json(cls, d: Json) -> "DeviceMisfit":
        return cls(
            device=str(d["device"]),
            name=_opt_str(d.get("name")),
            kind=str(d["kind"]),
            detail=str(d.get("detail", "")),
            wave=int(d.get("wave", 0)),
        )


@dataclass(frozen=True)
class RolloutCheck:
    """Whom a rollout would reach, wave by wave (cumulative), and who could not take it."""

    model: str
    version: str
    alias: str
    devices: int
    #: ``(percent, shadow, devices)`` per wave.
    waves: List[Tuple[float, bool, int]]
    misfit_counts: Dict[str, int]
    misfits: List[DeviceMisfit]
    #: Devices that never told their disk space (older agents): not judged on it.
    disk_unknown: int

    @classmethod
    def from_json(cls, d: Json) -> "RolloutCheck":
        return cls(
            model=str(d["model"]),
            version=str(d["version"]),
            alias=str(d.get("alias", "")),
            devices=int(d.get("devices", 0)),
            waves=[
                (float(w["percent"]), bool(w.get("shadow", False)), int(w["devices"]))
                for w in d.get("waves", [])
            ],
            misfit_counts={str(k): int(v) for k, v in (d.get("misfit_counts") or {}).items()},
            misfits=[DeviceMisfit.from_json(m) for m in d.get("misfits", [])],
            disk_unknown=int(d.get("disk_unknown", 0)),
        )


@dataclass(frozen=True)
class VersionCount:
    """Devices running one version (``None``: nothing installed yet)."""

    version: Optional[str]
    devices: int
    share: float

    @classmethod
    def from_json(cls, d: Json) -> "VersionCount":
        return cls(
            version=_opt_str(d.get("version")),
            devices=int(d.get("devices", 0)),
            share=float(d.get("share", 0.0)),
        )


@dataclass(frozen=True)
class AliasShare:
    """An alias target's adoption: devices following the alias, and of those on its target."""

    alias: str
    version: str
    following: int
    on_target: int
    share: float

    @classmethod
    def from_json(cls, d: Json) -> "AliasShare":
        return cls(
            alias=str(d["alias"]),
            version=str(d["version"]),
            following=int(d.get("following", 0)),
            on_target=int(d.get("on_target", 0)),
            share=float(d.get("share", 0.0)),
        )


@dataclass(frozen=True)
class ModelFleet:
    """One model across the fleet: the versions its devices run and each alias's adoption."""

    model: str
    devices: int
    versions: List[VersionCount]
    aliases: List[AliasShare]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Json) -> "ModelFleet":
        return cls(
            model=str(d["model"]),
            devices=int(d.get("devices", 0)),
            versions=[VersionCount.from_json(v) for v in d.get("versions", [])],
            aliases=[AliasShare.from_json(a) for a in d.get("aliases", [])],
            raw=dict(d),
        )


@dataclass(frozen=True)
class FleetStatus:
    """The fleet at a glance."""

    generated_at: int
    devices_total: int
    devices_connected: int
    bytes_served: int
    chunks_served: int
    deltas_served: int
    models: List[ModelFleet]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Json) -> "FleetStatus":
        return cls(
            generated_at=int(d.get("generated_at", 0)),
            devices_total=int(d.get("devices_total", 0)),
            devices_connected=int(d.get("devices_connected", 0)),
            bytes_served=int(d.get("bytes_served", 0)),
            chunks_served=int(d.get("chunks_served", 0)),
            deltas_served=int(d.get("deltas_served", 0)),
            models=[ModelFleet.from_json(m) for m in d.get("models", [])],
            raw=dict(d),
        )


@dataclass(frozen=True)
class CohortFragmentation:
    """The versions one cohort runs; ``index`` is the Gini–Simpson index (0: one version)."""

    cohort: str
    devices: int
    versions: List[VersionCount]
    distinct_versions: int
    index: float
    aliases: List[AliasShare]
    behind_by_reason: Dict[str, int]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Json) -> "CohortFragmentation":
        return cls(
            cohort=str(d.get("cohort", "")),
            devices=int(d.get("devices", 0)),
            versions=[VersionCount.from_json(v) for v in d.get("versions", [])],
            distinct_versions=int(d.get("distinct_versions", 0)),
            index=float(d.get("index", 0.0)),
            aliases=[AliasShare.from_json(a) for a in d.get("aliases", [])],
            behind_by_reason={str(k): int(v) for k, v in (d.get("behind_by_reason") or {}).items()},
            raw=dict(d),
        )


@dataclass(frozen=True)
class ModelFragmentation:
    """One model's fragmentation: the whole fleet, and per cohort when split by a label."""

    model: str
    overall: CohortFragmentation
    cohorts: List[CohortFragmentation]

    @classmethod
    def from_json(cls, d: Json) -> "ModelFragmentation":
        return cls(
            model=str(d["model"]),
            overall=CohortFragmentation.from_json(d.get("overall") or {}),
            cohorts=[CohortFragmentation.from_json(c) for c in d.get("cohorts", [])],
        )


@dataclass(frozen=True)
class FragmentationReport:
    """Which versions run where, per model and cohort."""

    generated_at: int
    by: Optional[str]
    models: List[ModelFragmentation]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Json) -> "FragmentationReport":
        return cls(
            generated_at=int(d.get("generated_at", 0)),
            by=_opt_str(d.get("by")),
            models=[ModelFragmentation.from_json(m) for m in d.get("models", [])],
            raw=dict(d),
        )
