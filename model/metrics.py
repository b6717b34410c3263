"""Classification metrics computed from labels and predictions."""

from typing import Any

import numpy as np
from numpy.typing import NDArray


def confusion_matrix(
    actual: NDArray[np.int64], predicted: NDArray[np.int64], classes: int
) -> NDArray[np.int64]:
    """Return counts indexed by [actual, predicted]."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (actual, predicted), 1)
    return matrix


def _safe_ratio(numerator: NDArray[np.float64], denominator: NDArray[np.float64]) -> NDArray[np.float64]:
    result: NDArray[np.float64] = np.divide(
        numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0
    )
    return result


def scores(matrix: NDArray[np.int64], class_names: list[str]) -> dict[str, Any]:
    """Return macro precision, recall and F1, and the same per class with their support."""
    hits = np.diag(matrix).astype(np.float64)
    precision = _safe_ratio(hits, matrix.sum(axis=0).astype(np.float64))
    recall = _safe_ratio(hits, matrix.sum(axis=1).astype(np.float64))
    f1 = _safe_ratio(2 * precision * recall, precision + recall)
    per_class = {
        name: {
            "precision": round(float(precision[i]), 4),
            "recall": round(float(recall[i]), 4),
            "f1": round(float(f1[i]), 4),
            "support": int(matrix[i].sum()),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "precision": round(float(precision.mean()), 4),
        "recall": round(float(recall.mean()), 4),
        "f1": round(float(f1.mean()), 4),
        "per_class": per_class,
    }
