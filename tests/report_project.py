"""A small real DVC project whose metrics and plots follow its params, for report tests."""

import time
from pathlib import Path
from typing import Any

import yaml

from runner.report.build import RunRecord
from tests.conftest import run

TRAIN = """
import json, pathlib, sys
import yaml

params = yaml.safe_load(open("params.yaml"))["train"]
if params["fail"]:
    print("loading batch 3 with AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY")
    print("RuntimeError: CUDA out of memory", file=sys.stderr)
    sys.exit(3)
q = params["quality"]
out = pathlib.Path("evaluation")
(out / "plots").mkdir(parents=True, exist_ok=True)
metrics = {"val_acc": q, "val_loss": round(1 - q, 4), "per_class": {"a": {"recall": q}}}
if params["extra_metric"]:
    metrics["f1"] = round(q - 0.01, 4)
(out / "metrics.json").write_text(json.dumps(metrics))
rows = [f"{e},{1 - q * e / 3:.4f},{1.05 - q * e / 3:.4f}" for e in (1, 2, 3)]
(out / "history.csv").write_text("epoch,train_loss,val_loss\\n" + "\\n".join(rows) + "\\n")
wrong = round((1 - q) * 10)
pairs = ["a,a"] * (10 - wrong) + ["a,b"] * wrong + ["b,b"] * 10
(out / "confusion.csv").write_text("actual,predicted\\n" + "\\n".join(pairs) + "\\n")
predictions = ["id,label,prediction,confidence"]
for i in range(200):  # accuracy q: the first (1 - q) * 200 examples (of class a) wrong
    label = "a" if i < 100 else "b"
    guess = "b" if i < round((1 - q) * 200) else label
    predictions.append(f"img_{i:03d}.png,{label},{guess},0.9")
(out / "predictions.csv").write_text("\\n".join(predictions) + "\\n")
from PIL import Image
Image.new("RGB", (40, 30), (200, int(q * 255), 40)).save(out / "plots" / "predictions.png")
"""

DVC_YAML: dict[str, Any] = {
    "stages": {
        "prepare": {
            "cmd": "python prepare.py",
            "deps": ["prepare.py"],
            "params": ["prepare"],
            "outs": ["data.txt"],
        },
        "train": {
            "cmd": "python train.py",
            "deps": ["train.py", "data.txt"],
            "params": ["train"],
            "outs": [
                {"evaluation/plots": {"cache": False}},
                {"evaluation/predictions.csv": {"cache": False}},
            ],
            "metrics": [{"evaluation/metrics.json": {"cache": False}}],
            "plots": [
                {"evaluation/history.csv": {"cache": False}},
                {"evaluation/confusion.csv": {"cache": False}},
            ],
        },
    },
    "plots": [
        {
            "Loss": {
                "template": "linear",
                "x": "epoch",
                "y": {"evaluation/history.csv": ["train_loss", "val_loss"]},
            }
        },
        {
            "Confusion matrix": {
                "template": "confusion",
                "x": "predicted",
                "y": {"evaluation/confusion.csv": "actual"},
            }
        },
        "evaluation/plots/predictions.png",
    ],
}
PARAMS: dict[str, Any] = {
    "prepare": {"rows": 3},
    "train": {"lr": 0.1, "quality": 0.8, "fail": False, "extra_metric": False},
}


def make_project(root: Path) -> Path:
    """Create the project as a git repository with DVC, without running it."""
    root.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q", "-b", "main"], root)
    run(["dvc", "init", "-q"], root)
    (root / "prepare.py").write_text(
        'import yaml, pathlib\nrows = yaml.safe_load(open("params.yaml"))["prepare"]["rows"]\n'
        'pathlib.Path("data.txt").write_text("x\\n" * rows)\n'
    )
    (root / "train.py").write_text(TRAIN)
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    set_params(root)
    return root


def set_params(root: Path, **train: Any) -> None:
    """Write params.yaml with the train params changed as given."""
    params = {**PARAMS, "train": {**PARAMS["train"], **train}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def repro(root: Path) -> RunRecord:
    """Run `dvc repro` and return its output and duration, as the workflow records them."""
    started = time.monotonic()
    result = run(["dvc", "repro"], root, check=False)
    return RunRecord(result.stdout + result.stderr, time.monotonic() - started)


def commit(root: Path, message: str) -> None:
    """Commit everything, as the base branch records a training run's outputs."""
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", message], root)


def trained_base(root: Path) -> Path:
    """Return the project with one training run committed on main."""
    make_project(root)
    repro(root)
    commit(root, "base run")
    return root
