"""Publishing: sign a release and upload it, through ``ferryctl publish``.

Why a subprocess and not a Python signer: the manifest's canonical bytes must be exactly what
the agents and the coordinator verify. ``ferryctl`` builds them with the same Rust code that
checks them (chunking, hashing, canonical encoding, ed25519 signing), so nothing can drift
between two implementations, private keys are read by one audited program, and this package
stays pure Python (no compiled extension to build for every training image). ``ferryctl``
ships beside the coordinator; pass its path as ``Client(ferryctl=...)`` or put it on PATH.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Sequence, TypeVar, Union

from .errors import FerryError, PublishError, Unreachable, api_error
from .models import Imported, Published

if TYPE_CHECKING:
    from .client import Client, PathLike

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """An artifact's upload so far: ``sent`` of ``total`` bytes of ``file``."""

    file: str
    sent: int
    total: int

    @property
    def fraction(self) -> float:
        return 1.0 if self.total == 0 else self.sent / self.total


def find_ferryctl(explicit: Optional[str]) -> str:
    """The ``ferryctl`` to run: the one given, ``$FERRYCTL``, or the one on PATH."""
    for candidate in (explicit, os.environ.get("FERRYCTL")):
        if candidate:
            return candidate
    found = shutil.which("ferryctl")
    if found is None:
        raise PublishError(
            "ferryctl not found: put it on PATH, set FERRYCTL, or pass Client(ferryctl=...)"
        )
    return found


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string (the same escapes).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise PublishError(f"meta {where}: cannot write a {type(value).__name__} into meta.toml")


def meta_toml(meta: Mapping[str, Any]) -> str:
    """``meta`` (the fields of ``meta.toml``: scalars, lists, tables of scalars, and lists of
    such tables, as ``datasets``) as TOML."""
    lines: List[str] = []
    tables = []
    for key, value in meta.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append((f"[{_toml_key(key)}]", key, value))
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
            tables.extend((f"[[{_toml_key(key)}]]", key, v) for v in value)
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, key)}")
    for header, key, table in tables:
        lines.append(f"\n{header}")
        for inner, value in table.items():
            if value is None:
                continue
            if isinstance(value, Mapping):
                raise PublishError(f"meta {key}.{inner}: tables nest one level deep in meta.toml")
            lines.append(f"{_toml_key(inner)} = {_toml_value(value, f'{key}.{inner}')}")
    return "\n".join(lines) + "\n"


# ferryctl's exit codes (`ferryctl --help`) that carry an HTTP status in their message.
_API_EXITS = {4: 403, 5: 404, 6: 409, 7: 400, 8: 500}
_STATUS_IN_MESSAGE = re.compile(r"\((\d{3})[^()]*\)\s*$")


def _failure(code: int, stderr: str, command: str = "publish") -> FerryError:
    """The exception for ``ferryctl COMMAND`` exiting with ``code`` after saying ``stderr``."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    message = lines[-1] if lines else f"ferryctl {command} exited with {code}"
    if message.startswith("ferryctl: error: "):
        message = message[len("ferryctl: error: "):]
    if code == 3:
        return Unreachable(message)
    if code in _API_EXITS:
        found = _STATUS_IN_MESSAGE.search(message)
        status = int(found.group(1)) if found else _API_EXITS[code]
        return api_error(status, message, command)
    return PublishError(message, stderr=stderr, exit_code=code)


def run(
    client: "Client",
    name: str,
    version: str,
    file: Optional["PathLike"],
    *,
    key: Union["PathLike", Sequence["PathLike"]],
    meta: Union[None, "PathLike", Mapping[str, Any]],
    variants: Optional[Mapping[str, "PathLike"]],
    accelerator: str,
    target: str,
    requires: Sequence[str],
    file_name: Optional[str],
    cpu_fallback: bool,
    reason: Optional[str],
    expires_days: Optional[int],
    progress: Optional[Callable[[Progress], None]],
) -> Published:
    """Runs ``ferryctl publish`` for ``client``'s coordinator; see :meth:`Client.publish`."""
    if (file is None) == (not variants):
        raise PublishError("give the artifact file, or variants (one file per build), not both")
    keys = [key] if isinstance(key, (str, os.PathLike)) else list(key)
    if not keys:
        raise PublishError("give at least one publisher key")
    args = [find_ferryctl(client.ferryctl), "publish", name, version]
    if file is not None:
        args += [os.fspath(file), "--accelerator", accelerator, "--target", target]
        for requirement in requires:
            args += ["--requires", requirement]
    elif requires:
        raise PublishError("requires goes with a file; give each variant's in its key")
    else:
        for platform, path in (variants or {}).items():
            args += ["--variant", f"{platform}={os.fspath(path)}"]
    for k in keys:
        args += ["--key", os.fspath(k)]
    if file_name is not None:
        args += ["--file-name", file_name]
    if cpu_fallback:
        args.append("--cpu-fallback")
    if reason is not None:
        args += ["--reason", reason]
    if expires_days is not None:
        args += ["--expires-days", str(expires_days)]
    args, env = _connection(client, args)
    with tempfile.TemporaryDirectory(prefix="ferry-publish-") as scratch:
        if isinstance(meta, Mapping):
            meta_file = Path(scratch) / "meta.toml"
            meta_file.write_text(meta_toml(meta))
            args += ["--meta", str(meta_file)]
        elif meta is not None:
            args += ["--meta", os.fspath(meta)]
        return _spawn(args, env, progress, "publish", Published.from_json)


def _connection(client: "Client", args: List[str]) -> "tuple[List[str], dict]":
    """``args`` with who publishes and where, and the environment carrying the token."""
    if client.actor:
        args = args + ["--as", client.actor, "--created-by", client.actor]
    args = args + ["--url", client.url, "--json", "--progress-lines"]
    env = dict(os.environ)
    env.pop("FERRY_TOKEN", None)
    if client.token:
        # The environment, not the command line: other users can read a process's arguments.
        env["FERRY_TOKEN"] = client.token
    return args, env


def import_mlflow(
    client: "Client",
    model: str,
    *,
    tracking_uri: str,
    key: Union["PathLike", Sequence["PathLike"]],
    name: Optional[str],
    version: Optional[str],
    dir_name: Optional[str],
    accelerator: str,
    target: str,
    set_stage: Optional[str],
    set_alias: Optional[str],
    reason: Optional[str],
    expires_days: Optional[int],
    progress: Optional[Callable[[Progress], None]],
) -> Imported:
    """Runs ``ferryctl import mlflow``; see :meth:`Client.import_mlflow`."""
    keys = [key] if isinstance(key, (str, os.PathLike)) else list(key)
    if not keys:
        raise PublishError("give at least one publisher key")
    args = [find_ferryctl(client.ferryctl), "import", "mlflow", model, "--tracking-uri", tracking_uri]
    args += ["--accelerator", accelerator, "--target", target]
    for k in keys:
        args += ["--key", os.fspath(k)]
    for flag, value in (
        ("--name", name),
        ("--version", version),
        ("--dir-name", dir_name),
        ("--set-stage", set_stage),
        ("--set-alias", set_alias),
        ("--reason", reason),
        ("--expires-days", None if expires_days is None else str(expires_days)),
    ):
        if value is not None:
            args += [flag, value]
    args, env = _connection(client, args)
    return _spawn(args, env, progress, "import mlflow", Imported.from_json)


def _spawn(
    args: List[str],
    env: Mapping[str, str],
    progress: Optional[Callable[[Progress], None]],
    command: str,
    parse: Callable[[Any], T],
) -> T:
    try:
        child = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            text=True,
        )
    except OSError as e:
        raise PublishError(f"cannot run {args[0]}: {e}") from e
    said: List[str] = []
    # The first exception the progress callback raised: ferryctl is stopped then (an upload
    # resumes where it stopped, and a publish is idempotent, so nothing is lost), and stderr
    # is still drained, so that ferryctl never blocks on a full pipe.
    raised: List[BaseException] = []

    def read_stderr() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            if not line.startswith('{"progress"'):
                said.append(line)
                continue
            try:
                event = json.loads(line)["progress"]
                update = Progress(str(event["file"]), int(event["sent"]), int(event["total"]))
            except (ValueError, KeyError, TypeError):
                said.append(line)
                continue
            if progress is None or raised:
                continue
            try:
                progress(update)
            except BaseException as e:  # re-raised in the caller's thread below
                raised.append(e)
                child.terminate()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert child.stdout is not None
    out = child.stdout.read()
    code = child.wait()
    reader.join()
    if raised:
        raise raised[0]
    stderr = "".join(said)
    if code != 0:
        raise _failure(code, stderr, command)
    try:
        return parse(json.loads(out))
    except (ValueError, KeyError, TypeError) as e:
        raise PublishError(f"ferryctl {command} answered what it should not: {e}: {out!r}", stderr) from None
