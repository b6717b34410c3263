"""The `train` stage is repeatable: the same params give the same model, another seed another one.

The stages run as DVC runs them (`python -m model.train ...` in a copy of the project), each
training into its own output files and into a BentoML store of its own, so the store the other
tests serve from never gets these models.
"""

import copy
import io
import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from bot.processes import tool_environment
from tests.conftest import TINY_PARAMS, copy_project, run

pytestmark = pytest.mark.slow


@dataclass
class Trained:
    weights: dict[str, torch.Tensor]
    history: str
    metrics: dict[str, object]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("determinism"), TINY_PARAMS)
    run(["dvc", "repro", "prepare"], project)  # generate and prepare: the data every run trains on
    return project


def stage(project: Path, module: str, *args: str) -> None:
    environment = {**tool_environment(), "BENTOML_HOME": str(project / ".bentoml-home")}
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{module} failed:\n{result.stdout}\n{result.stderr}"


def weights_of(bentomodel: Path) -> dict[str, torch.Tensor]:
    with tarfile.open(bentomodel, "r:*") as archive:
        member = archive.extractfile("./weights.pt")
        assert member is not None
        state: dict[str, torch.Tensor] = torch.load(
            io.BytesIO(member.read()), map_location="cpu", weights_only=True
        )
    return state


def train_and_evaluate(project: Path, name: str, seed: int) -> Trained:
    """Run the train and evaluate stages with `train.seed` = `seed`, their outputs under `name`."""
    params = copy.deepcopy(TINY_PARAMS)
    params["train"]["seed"] = seed
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    model, history, out = f"runs/{name}/classifier.bentomodel", f"runs/{name}/history.csv", f"runs/{name}"
    stage(project, "model.train", "--prepared", "data/prepared", "--model", model, "--history", history)
    stage(
        project,
        "model.evaluate",
        "--model",
        model,
        "--prepared",
        "data/prepared",
        "--history",
        history,
        "--out",
        out,
    )
    return Trained(
        weights=weights_of(project / model),
        history=(project / history).read_text(),
        metrics=json.loads((project / out / "metrics.json").read_text()),
    )


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_the_same_seed_trains_the_same_model_and_another_seed_another(prepared: Path) -> None:
    """Twice with TINY_PARAMS: bit-identical weights, per-epoch history and evaluation metrics.
    With only `train.seed` changed: different weights (and a different history)."""
    seed = TINY_PARAMS["train"]["seed"]
    assert isinstance(seed, int)
    first = train_and_evaluate(prepared, "first", seed)
    second = train_and_evaluate(prepared, "second", seed)
    other = train_and_evaluate(prepared, "other-seed", seed + 1)

    assert first.weights, "no weights were saved"
    assert same_weights(first.weights, second.weights)
    assert first.history == second.history
    assert first.metrics == second.metrics

    assert not same_weights(first.weights, other.weights)
    differing = [key for key in first.weights if not torch.equal(first.weights[key], other.weights[key])]
    assert any(key.endswith("weight") for key in differing)
    assert first.history != other.history
