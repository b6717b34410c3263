"""The `evaluate` stage: load the exported model through BentoML and score it on the validation split."""

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model import classifier as store
from model.classifier import Classifier
from model.dataset import Split, load_prepared
from model.metrics import confusion_matrix, scores
from model.plots import plot_confusion, plot_history, plot_predictions

PREVIEW_IMAGES = 24


def load_history(path: Path) -> list[dict[str, float]]:
    """Read the per-epoch history CSV written by `train`."""
    with path.open(newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def predict(classifier: Classifier, split: Split) -> tuple[np.ndarray, float]:
    """Return class probabilities for the split and the mean cross-entropy."""
    probabilities = np.concatenate(
        [classifier.probabilities(split.pixels[i : i + 256]) for i in range(0, len(split.pixels), 256)]
    )
    logp = torch.log(torch.from_numpy(probabilities).clamp_min(1e-12))
    loss = float(nn.functional.nll_loss(logp, torch.from_numpy(split.labels)))
    return probabilities, loss


def write_confusion_csv(path: Path, split: Split, predicted: np.ndarray, classes: list[str]) -> None:
    """Write one row per validation image, the data of DVC's confusion plot."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "actual", "predicted"])
        for name, truth, guess in zip(split.files, split.labels, predicted, strict=True):
            writer.writerow([name, classes[truth], classes[guess]])


def write_predictions_csv(path: Path, split: Split, probabilities: np.ndarray, classes: list[str]) -> None:
    """Write each validation image's label, prediction and confidence: what the report's statistics pair."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "prediction", "confidence"])
        for name, truth, row in zip(split.files, split.labels, probabilities, strict=True):
            guess = int(row.argmax())
            writer.writerow([name, classes[truth], classes[guess], f"{float(row[guess]):.4f}"])


def report_metrics(
    loss: float, actual: np.ndarray, predicted: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """Return metrics.json: loss, accuracy, macro precision/recall/F1 and the same per class.

    The per-class support is left out: the validation set fixes it, so it never changes.
    """
    result = scores(confusion_matrix(actual, predicted, len(classes)), classes)
    return {
        "val_loss": round(loss, 4),
        "val_acc": round(float((predicted == actual).mean()), 4),
        "val_precision": result["precision"],
        "val_recall": result["recall"],
        "val_f1": result["f1"],
        "per_class": {
            name: {key: value for key, value in values.items() if key != "support"}
            for name, values in result["per_class"].items()
        },
    }


def evaluate(model_file: Path, prepared: Path, history: Path, out: Path) -> dict[str, Any]:
    """Score the exported model and write metrics, predictions, plot data and PNGs into `out`."""
    stored = store.import_bentomodel(model_file)
    classifier = store.load(stored.path)
    val = load_prepared(prepared).val
    probabilities, loss = predict(classifier, val)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(val.labels, predicted, len(classifier.classes))
    metrics = report_metrics(loss, val.labels, predicted, classifier.classes)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_confusion_csv(out / "confusion.csv", val, predicted, classifier.classes)
    write_predictions_csv(out / "predictions.csv", val, probabilities, classifier.classes)
    _draw(out / "plots", classifier, val, probabilities, matrix, load_history(history))
    return metrics


def _draw(
    folder: Path,
    classifier: Classifier,
    val: Split,
    probabilities: np.ndarray,
    matrix: np.ndarray,
    history: list[dict[str, float]],
) -> None:
    classes = classifier.classes
    plot_history(folder / "training_history.png", [("head", history)])
    plot_confusion(folder / "confusion_matrix.png", [("validation", matrix)], classes)
    step = max(1, len(val.labels) // PREVIEW_IMAGES)
    picks = list(range(0, len(val.labels), step))[:PREVIEW_IMAGES]
    plot_predictions(
        folder / "predictions.png",
        val.pixels[picks],
        [classes[val.labels[i]] for i in picks],
        [classes[int(probabilities[i].argmax())] for i in picks],
        [float(probabilities[i].max()) for i in picks],
    )


def main() -> None:
    """Run the stage."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("model/classifier.bentomodel"))
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--history", type=Path, default=Path("evaluation/history.csv"))
    parser.add_argument("--out", type=Path, default=Path("evaluation"))
    args = parser.parse_args()
    metrics = evaluate(args.model, args.prepared, args.history, args.out)
    print(f"val_acc {metrics['val_acc']}  val_loss {metrics['val_loss']}  f1 {metrics['val_f1']}")


if __name__ == "__main__":
    main()
