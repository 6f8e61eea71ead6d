"""The admin API client: one coordinator, one token, typed answers and typed errors."""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from . import publish as _publish
from .errors import FerryError, Timeout, Unreachable, api_error
from .models import (
    AliasChanged,
    AliasView,
    ExperimentView,
    FleetStatus,
    FragmentationReport,
    Imported,
    Published,
    ReleaseView,
    RolloutCheck,
    RolloutView,
    StageView,
    TransitionView,
    Wave,
)

PathLike = Union[str, "os.PathLike[str]"]

#: Where ``ferryctl`` and the coordinator listen by default.
DEFAULT_URL = "http://127.0.0.1:7401"

#: The header the coordinator records as the person acting (beside the token's own name).
ACTOR_HEADER = "x-ferry-actor"


class Client:
    """A coordinator's admin API.

    ``url`` defaults to ``$FERRY_URL`` or ``http://127.0.0.1:7401``; the token to ``token``,
    else ``$FERRY_TOKEN``, else the contents of ``token_file``. ``actor`` names who acts, for
    the audit trail (``$USER`` by default). ``ca_file`` adds a CA for an https:// URL.
    ``ferryctl`` is the program :meth:`publish` signs and uploads with.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        *,
        token_file: Optional[PathLike] = None,
        actor: Optional[str] = None,
        timeout: float = 30.0,
        ca_file: Optional[PathLike] = None,
        ferryctl: Optional[PathLike] = None,
    ) -> None:
        self.url = (url or os.environ.get("FERRY_URL") or DEFAULT_URL).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise FerryError(f"{self.url!r}: the coordinator URL starts with http:// or https://")
        if token is None:
            token = os.environ.get("FERRY_TOKEN")
        if token is None and token_file is not None:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as e:
                raise FerryError(f"cannot read the token file {token_file}: {e}") from e
        self.token = token
        self.actor = actor or os.environ.get("USER")
        self.timeout = timeout
        self.ferryctl = str(ferryctl) if ferryctl is not None else None
        self._ssl = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None

    # -- transport ---------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: Optional[Mapping[str, Any]] = None,
        query: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        shown = path
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            if pairs:
                path = f"{path}?{urllib.parse.urlencode(pairs)}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/api/v1{path}", data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if self.actor:
            request.add_header(ACTOR_HEADER, self.actor)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl) as answer:
                text = answer.read()
        except urllib.error.HTTPError as e:
            raw = e.read().decode(errors="replace")
            try:
                message = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                message = raw.strip() or e.reason
            raise api_error(e.code, str(message), method, shown) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise Unreachable(f"cannot reach the coordinator at {self.url}: {reason}") from None
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as e:
            raise FerryError(f"{method} {shown}: the answer is not JSON: {e}") from None

    @staticmethod
    def _segment(value: str) -> str:
        return urllib.parse.quote(str(value), safe="")

    # -- releases ----------------------------------------------------------------------

    def releases(self, name: Optional[str] = None) -> List[ReleaseView]:
        """Every release, or every release of model ``name``."""
        return [ReleaseView.from_json(r) for r in self._request("GET", "/releases", query={"name": name})]

    def release(self, name: str, version: str) -> ReleaseView:
        """One release."""
        path = f"/releases/{self._segment(name)}/{self._segment(version)}"
        return ReleaseView.from_json(self._request("GET", path))

    def publish(
        self,
        name: str,
        version: str,
        file: Optional[PathLike] = None,
        *,
        key: Union[PathLike, Sequence[PathLike]],
        meta: Union[None, PathLike, Mapping[str, Any]] = None,
        variants: Optional[Mapping[str, PathLike]] = None,
        accelerator: str = "any",
        target: str = "any",
        requires: Sequence[str] = (),
        file_name: Optional[str] = None,
        cpu_fallback: bool = False,
        reason: Optional[str] = None,
        expires_days: Optional[int] = None,
        progress: Optional[Callable[[_publish.Progress], None]] = None,
    ) -> Published:
        """Signs and publishes a release with ``ferryctl publish`` (see :mod:`ferry.publish`).

        Give the artifact ``file`` (with ``accelerator``, ``target`` and the hardware it
        ``requires``, e.g. ``["cuda >= 12.2"]``), or ``variants`` mapping
        ``ACCEL[/TARGET][[REQ, …]]`` to a file for each build
        (``{"gpu[cuda >= 12.2]": "model.engine", "cpu": "model.onnx"}``). ``key`` is the publisher key file
        (or several, when the trust root wants more than one signature). ``meta`` is a
        ``meta.toml`` path or a mapping of the same fields. ``progress`` is called as the
        artifacts upload.
        """
        return _publish.run(
            self,
            name,
            version,
            file,
            key=key,
            meta=meta,
            variants=variants,
            accelerator=accelerator,
            target=target,
            requires=requires,
            file_name=file_name,
            cpu_fallback=cpu_fallback,
            reason=reason,
            expires_days=expires_days,
            progress=progress,
        )

    def import_mlflow(
        self,
        model: str,
        *,
        tracking_uri: str,
        key: Union[PathLike, Sequence[PathLike]],
        name: Optional[str] = None,
        version: Optional[str] = None,
        dir_name: Optional[str] = None,
        accelerator: str = "any",
        target: str = "any",
        set_stage: Optional[str] = None,
        set_alias: Optional[str] = None,
        reason: Optional[str] = None,
        expires_days: Optional[int] = None,
        progress: Optional[Callable[[_publish.Progress], None]] = None,
    ) -> Imported:
        """Publishes a registered MLflow model version with ``ferryctl import mlflow``.

        ``model`` is ``NAME/VERSION``, ``NAME@ALIAS`` or ``NAME`` (its newest version) on the
        tracking server at ``tracking_uri``. Its files become one directory artifact; its run's
        params, metrics, tags, datasets, signature and source are signed into the release.
        ``name`` and ``version`` override the Ferry name and version (MLflow's ``N`` becomes
        ``N.0.0``). ``set_stage`` / ``set_alias`` move the release afterwards.
        """
        return _publish.import_mlflow(
            self,
            model,
            tracking_uri=tracking_uri,
            key=key,
            name=name,
            version=version,
            dir_name=dir_name,
            accelerator=accelerator,
            target=target,
            set_stage=set_stage,
            set_alias=set_alias,
            reason=reason,
            expires_days=expires_days,
            progress=progress,
        )

    # -- aliases -----------------------------------------------------------------------

    def aliases(self, name: Optional[str] = None) -> List[AliasView]:
        """Every alias, or those of model ``name``."""
        return [AliasView.from_json(a) for a in self._request("GET", "/aliases", query={"name": name})]

    def set_alias(
        self, name: str, alias: str, version: str, *, reason: Optional[str] = None, force: bool = False
    ) -> AliasChanged:
        """Points ``alias`` of model ``name`` at ``version`` (``prod`` needs the promote right)."""
        path = f"/aliases/{self._segment(name)}/{self._segment(alias)}"
        body = {"version": version, "reason": reason, "force": force}
        return AliasChanged.from_json(self._request("PUT", path, body))

    # -- lifecycle ---------------------------------------------------------------------

    def stage(self, name: str, version: str) -> StageView:
        """Where a release stands in its lifecycle."""
        path = f"/releases/{self._segment(name)}/{self._segment(version)}/stage"
        return StageView.from_json(self._request("GET", path))

    def move_stage(
        self,
        name: str,
        version: str,
        stage: str,
        *,
        reason: Optional[str] = None,
        dry_run: bool = False,
        force: bool = False,
    ) -> TransitionView:
        """Moves a release to ``stage`` (``staging``, ``production``, ``deprecated``,
        ``archived``); raises :class:`~ferry.errors.Conflict` naming each failed check when
        the stage's policy refuses it. ``dry_run`` only evaluates the checks."""
        path = f"/releases/{self._segment(name)}/{self._segment(version)}/stage/{self._segment(stage)}"
        body = {"reason": reason, "dry_run": dry_run, "force": force}
        return TransitionView.from_json(self._request("POST", path, body))

    def approve(self, name: str, version: str, *, reason: Optional[str] = None) -> StageView:
        """Approves a release toward production (as the token's owner)."""
        path = f"/releases/{self._segment(name)}/{self._segment(version)}/approvals"
        return StageView.from_json(self._request("POST", path, {"reason": reason}))

    # -- rollouts ----------------------------------------------------------------------

    def rollouts(self) -> List[RolloutView]:
        """Every rollout."""
        return [RolloutView.from_json(r) for r in self._request("GET", "/rollouts")]

    def rollout(self, rollout_id: str) -> RolloutView:
        """One rollout, with its gates and devices now."""
        return RolloutView.from_json(self._request("GET", f"/rollouts/{self._segment(rollout_id)}"))

    def create_rollout(
        self,
        model: str,
        version: str,
        *,
        waves: Optional[Sequence[Wave]] = None,
        cohort: str = "",
        alias: Optional[str] = None,
        rollout_id: Optional[str] = None,
        reason: Optional[str] = None,
        force: bool = False,
        unreachable_after_secs: Optional[int] = None,
        max_left_out_percent: Optional[float] = None,
        max_downloading: Optional[int] = None,
    ) -> RolloutView:
        """Starts a staged rollout of ``version`` to the devices of ``cohort`` (a label
        selector; the whole fleet when empty) that follow ``alias`` (``prod`` by default).
        Without ``waves``: 5 → 25 → 50 → 100 % with an hour's bake and the default gates.
        ``max_downloading`` lets at most that many devices download at once."""
        body = self._rollout_body(
            model, version, waves, cohort, alias, rollout_id, reason, force,
            unreachable_after_secs, max_left_out_percent,
        )
        if max_downloading is not None:
            body["max_downloading"] = max_downloading
        return RolloutView.from_json(self._request("POST", "/rollouts", body))

    def check_rollout(
        self,
        model: str,
        version: str,
        *,
        waves: Optional[Sequence[Wave]] = None,
        cohort: str = "",
        alias: Optional[str] = None,
        rollout_id: Optional[str] = None,
    ) -> RolloutCheck:
        """Starts nothing: how many devices each wave of that rollout would reach, and those
        that could not take ``version`` (its schemas, their hardware, or their disk by the
        free space they last told)."""
        body = self._rollout_body(model, version, waves, cohort, alias, rollout_id, None, False, None, None)
        return RolloutCheck.from_json(self._request("POST", "/rollouts/check", body))

    @staticmethod
    def _rollout_body(
        model: str,
        version: str,
        waves: Optional[Sequence[Wave]],
        cohort: str,
        alias: Optional[str],
        rollout_id: Optional[str],
        reason: Optional[str],
        force: bool,
        unreachable_after_secs: Optional[int],
        max_left_out_percent: Optional[float],
    ) -> Dict[str, Any]:
        body: Dict[str, Any] = {
            "id": rollout_id,
            "model": model,
            "version": version,
            "alias": alias,
            "cohort": cohort,
            "reason": reason,
            "force": force,
            "unreachable_after_secs": unreachable_after_secs,
            "max_left_out_percent": max_left_out_percent,
        }
        if waves is not None:
            body["waves"] = [w.to_json() for w in waves]
        return body

    # -- experiments -----------------------------------------------------------------

    def create_experiment(
        self,
        model: str,
        challenger: str,
        *,
        duration_secs: int,
        percent: float = 50.0,
        min_samples: int = 0,
        cohort: str = "",
        alias: Optional[str] = None,
        experiment_id: Optional[str] = None,
        reason: Optional[str] = None,
        force: bool = False,
    ) -> ExperimentView:
        """Serves ``challenger`` to ``percent`` % of the cohort, the rest staying on what
        ``alias`` (``prod``) points at, for ``duration_secs`` (or ``min_samples`` requests
        per arm); see ``ferryctl experiment``."""
        body = {
            "id": experiment_id,
            "model": model,
            "challenger": challenger,
            "alias": alias,
            "cohort": cohort,
            "percent": percent,
            "duration_secs": duration_secs,
            "min_samples": min_samples,
            "reason": reason,
            "force": force,
        }
        return ExperimentView.from_json(self._request("POST", "/experiments", body))

    def experiments(self) -> List[ExperimentView]:
        """Every experiment, with its readout."""
        return [ExperimentView.from_json(e) for e in self._request("GET", "/experiments")]

    def experiment(self, experiment_id: str) -> ExperimentView:
        """One experiment, with its readout."""
        path = f"/experiments/{self._segment(experiment_id)}"
        return ExperimentView.from_json(self._request("GET", path))

    def decide_experiment(
        self,
        experiment_id: str,
        verdict: str,
        *,
        reason: str,
        extend_secs: Optional[int] = None,
        early: bool = False,
    ) -> ExperimentView:
        """Records ``verdict`` (``promote``, ``reject`` or ``extend``) with ``reason``, and
        carries it out."""
        path = f"/experiments/{self._segment(experiment_id)}/decide"
        body = {"verdict": verdict, "reason": reason, "extend_secs": extend_secs, "early": early}
        return ExperimentView.from_json(self._request("POST", path, body))

    def _act(self, rollout_id: str, action: str, reason: Optional[str]) -> RolloutView:
        path = f"/rollouts/{self._segment(rollout_id)}/{action}"
        return RolloutView.from_json(self._request("POST", path, {"reason": reason}))

    def pause_rollout(self, rollout_id: str, *, reason: Optional[str] = None) -> RolloutView:
        """Holds the rollout where it is."""
        return self._act(rollout_id, "pause", reason)

    def resume_rollout(self, rollout_id: str, *, reason: Optional[str] = None) -> RolloutView:
        """Lets a paused rollout go on."""
        return self._act(rollout_id, "resume", reason)

    def approve_rollout(self, rollout_id: str, *, reason: Optional[str] = None) -> RolloutView:
        """Lets a wave that waits for approval start."""
        return self._act(rollout_id, "approve", reason)

    def abort_rollout(self, rollout_id: str, *, reason: Optional[str] = None) -> RolloutView:
        """Stops the rollout; devices stay where they are."""
        return self._act(rollout_id, "abort", reason)

    def rollback_rollout(self, rollout_id: str, *, reason: Optional[str] = None) -> RolloutView:
        """Sends the rollout's devices back to the version they ran before."""
        return self._act(rollout_id, "rollback", reason)

    def wait_rollout(
        self,
        rollout_id: str,
        *,
        timeout: float = 3600.0,
        poll: float = 2.0,
        until: Optional[Callable[[RolloutView], bool]] = None,
        on_change: Optional[Callable[[RolloutView], None]] = None,
    ) -> RolloutView:
        """Polls the rollout until it finishes (``Completed``, ``Aborted`` or
        ``RolledBack``) or ``until`` says so; raises :class:`~ferry.errors.Timeout` (with the
        last state) after ``timeout`` seconds. ``on_change`` sees each new state."""
        deadline = time.monotonic() + timeout
        done = until or (lambda view: view.finished)
        last: Optional[RolloutView] = None
        while True:
            view = self.rollout(rollout_id)
            if on_change is not None and (last is None or view.raw != last.raw):
                on_change(view)
            last = view
            if done(view):
                return view
            if time.monotonic() >= deadline:
                raise Timeout(
                    f"rollout {rollout_id} still {view.phase} after {timeout:g} s", last=view
                )
            time.sleep(max(0.05, min(poll, deadline - time.monotonic())))

    # -- fleet -------------------------------------------------------------------------

    def fleet_status(self, *, stale_after: Optional[int] = None) -> FleetStatus:
        """The fleet at a glance: devices, versions per model, alias adoption, transfers."""
        return FleetStatus.from_json(self._request("GET", "/fleet/status", query={"stale_after": stale_after}))

    def fragmentation(self, *, by: Optional[str] = None) -> FragmentationReport:
        """Which versions run where, per model, split by the label ``by`` when given."""
        return FragmentationReport.from_json(
            self._request("GET", "/fleet/fragmentation", query={"by": by})
        )
