"""A real coordinator (and, for the fleet views, a real agent) for the client's tests, built
from this repository: ``FERRY_BIN_DIR`` names the directory of the binaries, else
``target/debug`` at the repository's root (``cargo build --bins`` makes them)."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]


def binary(name: str) -> Path:
    directory = Path(os.environ.get("FERRY_BIN_DIR", REPO / "target" / "debug"))
    path = directory / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `cargo build --bins` first (or set FERRY_BIN_DIR)")
    return path


@dataclass
class Coordinator:
    """A running ``ferry-coordinator`` and what a client needs to reach it."""

    process: subprocess.Popen
    data_dir: Path
    url: str
    quic: str
    fingerprint: str
    token: str
    key: Path

    def ctl(self, *args: str) -> str:
        """Runs ``ferryctl`` against it as the admin; its standard output."""
        env = dict(os.environ, FERRY_URL=self.url, FERRY_TOKEN=self.token)
        done = subprocess.run(
            [str(binary("ferryctl")), *args], env=env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise AssertionError(f"ferryctl {' '.join(args)} failed: {done.stderr}")
        return done.stdout


def _ready_line(process: subprocess.Popen, timeout: float) -> Dict[str, str]:
    """The fields of the coordinator's ``ready quic=… http=… admin=…`` line."""
    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        if line.startswith("ready "):
            return dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
    raise AssertionError("the coordinator did not become ready")


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    home = tmp_path_factory.mktemp("coordinator")
    data = home / "data"
    log = open(home / "coordinator.log", "w")
    process = subprocess.Popen(
        [
            str(binary("ferry-coordinator")),
            "--data-dir", str(data),
            "--quic-listen", "127.0.0.1:0",
            "--http-listen", "127.0.0.1:0",
            "--heartbeat-secs", "1",
            "--rollout-tick-ms", "200",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        ready = _ready_line(process, 60)
        token = (data / "admin.token").read_text().strip()
        key = home / "publisher.key"
        node = Coordinator(process, data, ready["admin"], ready["quic"], ready["fingerprint"], token, key)
        node.ctl("keys", "generate", "--out", str(key))
        node.ctl("keys", "trust", f"{key}.pub", "--name", "pytest")
        yield node
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen) -> None:
    """Asks ``process`` to end, and kills it when it has not within 20 seconds."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def eventually(check, timeout: float = 60.0, what: str = "the condition"):
    """``check()``'s first true value, asked every 0.2 s, or AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@dataclass
class Agent:
    process: subprocess.Popen
    state: Path


@pytest.fixture(scope="module")
def agents(coordinator: Coordinator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[List[Agent]]:
    """Two real agents following ``detector@prod``, labelled ``site=lab`` and ``site=plant``."""
    started: List[Agent] = []
    public = Path(f"{coordinator.key}.pub").read_text().strip()
    try:
        for site in ("lab", "plant"):
            home = tmp_path_factory.mktemp(f"agent-{site}")
            config = home / "agent.toml"
            config.write_text(
                f'coordinator = ["{coordinator.quic}"]\n'
                f'coordinator_fingerprint = "{coordinator.fingerprint}"\n'
                f'enrollment_token_file = "{coordinator.data_dir / "enrollment.token"}"\n'
                f'state_dir = "{home / "state"}"\n'
                'model = "detector"\nalias = "prod"\n'
                f'trusted_keys = ["{public}"]\n'
                "poll_interval_secs = 1\n\n[labels]\n"
                f'site = "{site}"\n'
            )
            log = open(home / "agent.log", "w")
            process = subprocess.Popen(
                [str(binary("ferry-agent")), "--config", str(config), "run"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            started.append(Agent(process, home / "state"))
        yield started
    finally:
        for agent in started:
            agent.process.terminate()
        for agent in started:
            try:
                agent.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                agent.process.kill()
