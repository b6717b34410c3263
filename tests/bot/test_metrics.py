import numpy as np

from model.metrics import confusion_matrix, scores


def test_scores_of_a_known_confusion() -> None:
    actual = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    matrix = confusion_matrix(actual, predicted, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    result = scores(matrix, ["a", "b", "c"])
    assert result["per_class"]["b"] == {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 2}
    assert result["recall"] == round((0.5 + 1.0 + 0.5) / 3, 4)


def test_a_class_never_predicted_scores_zero_not_nan() -> None:
    matrix = confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2)
    result = scores(matrix, ["a", "b"])
    assert result["per_class"]["b"]["precision"] == 0.0
    assert result["per_class"]["b"]["f1"] == 0.0
