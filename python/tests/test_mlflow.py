"""Import from a real MLflow tracking server (``mlflow server``, SQLite backend, proxied local
artifacts) started by the test: a registered scikit-learn model with params, metrics, tags,
two datasets and a signature becomes a signed Ferry release, every field checked on the release
and its model card; real agents install its directory; ``--watch`` follows ``@champion``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

import ferry

from .conftest import Coordinator, binary, eventually, stop


REGISTERED = "fraud-detector"
MODEL = "detector"  # what the conftest agents follow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mlflow_bin() -> Path:
    """The ``mlflow`` beside this interpreter: the venv scripts/install-python-client.sh made."""
    path = Path(sys.executable).parent / "mlflow"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/install-python-client.sh (it installs MLflow)")
    return path


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(home / "server.log", "w")
    process = subprocess.Popen(
        [
            str(mlflow_bin()), "server",
            "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
            "--artifacts-destination", str(home / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=home,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not start; see {home / 'server.log'}")
            time.sleep(0.5)
        yield url
    finally:
        stop(process)
        log.close()


def register(url: str, *, base: int | None, c: float, accuracies: list[float]) -> str:
    """Trains and registers a version of ``fraud-detector`` the way a pipeline would; returns
    its MLflow version."""
    import mlflow as ml
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    ml.set_tracking_uri(url)
    ml.set_experiment("fraud")
    x = pd.DataFrame({"amount": np.arange(40.0), "age_days": np.arange(40.0)[::-1]})
    y = (x.amount > 20).astype(int)
    with ml.start_run(run_name="pipeline"):
        with ml.start_run(run_name="train", nested=True):
            params = {"C": c, "solver": "lbfgs"}
            if base is not None:
                params["base_model"] = f"models:/{REGISTERED}/{base}"
            ml.log_params(params)
            for step, value in enumerate(accuracies):
                ml.log_metric("accuracy", value, step=step)
            ml.set_tags({"team": "fraud", "mlflow.source.git.commit": "9f2c1e7"})
            train = ml.data.from_pandas(x.assign(label=y), source="s3://data/tx-2026-11.parquet", name="tx-2026-11")
            ml.log_input(train, context="training")
            ml.log_input(ml.data.from_pandas(x.head(8), name="holdout"), context="eval")
            model = LogisticRegression(C=c).fit(x, y)
            info = ml.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(x, model.predict(x)),
                registered_model_name=REGISTERED,
            )
    version = str(info.registered_model_version)
    client = ml.MlflowClient(url)
    client.update_model_version(REGISTERED, version, description=f"C={c}")
    client.set_model_version_tag(REGISTERED, version, "validated", "yes")
    client.set_model_version_tag(REGISTERED, version, "ferry.input_schema", "tx-features/v3")
    return version


def client_of(node: Coordinator) -> ferry.Client:
    return ferry.Client(node.url, node.token, actor="pytest", ferryctl=binary("ferryctl"))


def test_an_mlflow_model_version_becomes_a_signed_release_with_every_field(coordinator, agents, tracking):
    import sklearn

    version = register(tracking, base=None, c=0.5, accuracies=[0.91, 0.95])
    assert version == "1"
    client = client_of(coordinator)
    seen = []
    imported = client.import_mlflow(
        f"{REGISTERED}/1",
        tracking_uri=tracking,
        key=coordinator.key,
        name=MODEL,
        set_alias="prod",
        progress=seen.append,
    )
    assert imported.created and (imported.name, imported.version) == (MODEL, "1.0.0")
    assert (imported.mlflow_model, imported.mlflow_version) == (REGISTERED, "1")
    assert imported.files >= 4 and imported.alias == "prod"
    assert seen and seen[-1].sent == seen[-1].total

    release = client.release(MODEL, "1.0.0").release
    assert release.schema == 3
    (variant,) = release.variants
    assert (variant.kind, variant.file_name) == ("directory", "model.tar")
    m = release.metadata
    assert m["code_commit"] == "9f2c1e7"
    assert m["hyperparameters"] == {"C": "0.5", "solver": "lbfgs"}
    assert m["metrics"] == {"accuracy": 0.95}, "the latest value of a metric's history"
    assert m["tags"]["team"] == "fraud" and m["tags"]["validated"] == "yes"
    assert not any(k.startswith("mlflow.") for k in m["tags"])
    datasets = {d["name"]: d for d in m["datasets"]}
    assert datasets["tx-2026-11"]["role"] == "training"
    assert datasets["tx-2026-11"]["source"] == "s3://data/tx-2026-11.parquet"
    assert datasets["tx-2026-11"]["digest"]
    assert datasets["holdout"]["role"] == "eval"
    assert m["interface"]["format"] == "mlflow-signature"
    assert '"amount"' in m["interface"]["inputs"] and "int64" in m["interface"]["outputs"]
    assert m["framework"] == {"name": "sklearn", "version": sklearn.__version__}
    assert m["dependencies"]["scikit-learn"] == sklearn.__version__
    assert m["input_schema"] == "tx-features/v3"
    assert m["changelog"] == "C=0.5"
    assert m["owner"], "the run's user"
    assert m["parents"] == []
    source = m["source"]
    assert source["registry"] == "mlflow"
    assert source["uri"] == f"{tracking}/#/models/{REGISTERED}/versions/1"
    assert (source["model"], source["model_version"], source["experiment"]) == (REGISTERED, "1", "fraud")
    assert source["run_id"] and source["run_uri"].endswith(f"/runs/{source['run_id']}")

    card = coordinator.ctl("card", MODEL, "1.0.0")
    for expected in ("mlflow", source["uri"], "tx-2026-11", "training", "holdout", "mlflow-signature", "team"):
        assert expected in card, f"{expected!r} missing from the model card:\n{card}"

    # Both agents install the directory: the MLflow model tree, unpacked, under current/.
    for agent in agents:
        tree = agent.state / "models" / MODEL / "current" / "model"
        eventually(lambda: (tree / "MLmodel").is_file(), what=f"{tree}/MLmodel")
        assert (tree / "requirements.txt").is_file()

    again = client.import_mlflow(f"{REGISTERED}/1", tracking_uri=tracking, key=coordinator.key, name=MODEL)
    assert not again.created, "an import of the same version changes nothing"


def test_watch_follows_the_champion_alias_into_a_ferry_alias(coordinator, agents, tracking):
    import mlflow as ml

    ml_client = ml.MlflowClient(tracking)
    if not ml_client.search_model_versions(f"name='{REGISTERED}'"):
        register(tracking, base=None, c=0.5, accuracies=[0.95])
    ml_client.set_registered_model_alias(REGISTERED, "champion", "1")
    env = dict(os.environ, FERRY_URL=coordinator.url, FERRY_TOKEN=coordinator.token)
    watcher = subprocess.Popen(
        [
            str(binary("ferryctl")), "import", "mlflow", f"{REGISTERED}@champion",
            "--tracking-uri", tracking, "--key", str(coordinator.key), "--name", MODEL,
            "--watch", "--interval-secs", "1", "--set-alias", "prod", "--json",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # A fine-tuned challenger, registered from version 1, wins and becomes champion.
        challenger = register(tracking, base=1, c=0.7, accuracies=[0.97])
        ml_client.set_registered_model_alias(REGISTERED, "champion", challenger)
        client = client_of(coordinator)
        wanted = f"{challenger}.0.0"
        eventually(
            lambda: any(a.alias == "prod" and a.version == wanted for a in client.aliases(MODEL)),
            what=f"prod to follow @champion to {wanted}",
        )
        release = client.release(MODEL, wanted).release
        assert release.metadata["parents"] == ["1.0.0"], "base_model names version 1"
        assert release.metadata["source"]["model_version"] == challenger
        for agent in agents:
            tree = agent.state / "models" / MODEL / "current"
            eventually(lambda: tree.resolve().name == wanted, what=f"{tree} -> {wanted}")
    finally:
        watcher.terminate()
        out, err = watcher.communicate(timeout=20)
    assert f'"version": "{wanted}"' in out or f'"version":"{wanted}"' in out, f"{out}\n{err}"


def test_an_unknown_model_version_is_a_clear_error(coordinator, tracking):
    with pytest.raises(ferry.FerryError) as refused:
        client_of(coordinator).import_mlflow(
            f"{REGISTERED}/99", tracking_uri=tracking, key=coordinator.key, name=MODEL
        )
    assert "RESOURCE_DOES_NOT_EXIST" in str(refused.value) or "not found" in str(refused.value).lower()
