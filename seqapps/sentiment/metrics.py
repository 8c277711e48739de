"""Classification metrics without extra dependencies: accuracy, per-class and macro F1, confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion(y_true, y_pred, n: int) -> np.ndarray:
    """cm[i, j] = number of examples of true class i predicted as j."""
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def report(y_true, y_pred, labels: list[str]) -> dict:
    """Accuracy, per-class and macro F1 and the confusion matrix. A prediction of -1 is none (a text without
    tokens): it counts as wrong and lowers its class's recall, and stays out of the matrix, which says how
    many there were. Macro F1 averages the classes that occur as true or predicted labels (as sklearn does)."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    made = y_pred >= 0
    cm = confusion(y_true[made], y_pred[made], len(labels))
    support = np.bincount(y_true, minlength=len(labels)).astype(float)  # with the texts given no prediction
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    present = (support + cm.sum(0)) > 0
    return {
        "examples": int(len(y_true)),
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "f1": {lab: float(v) for lab, v in zip(labels, f1)},
        "labels": list(labels),
        "confusion_matrix": cm.tolist(),
        "no_prediction": int((~made).sum()),
    }


def format_report(rep: dict) -> str:
    labels, cm = rep["labels"], rep["confusion_matrix"]
    w = max(8, *(len(x) for x in labels)) + 1
    lines = [
        f"examples {rep['examples']}  accuracy {rep['accuracy']:.4f}  macro F1 {rep['macro_f1']:.4f}",
        "F1 per class: " + ", ".join(f"{k} {v:.4f}" for k, v in rep["f1"].items()),
        "confusion matrix (rows: true, columns: predicted)",
        " " * w + "".join(f"{x:>{w}}" for x in labels),
    ]
    for lab, row in zip(labels, cm):
        lines.append(f"{lab:>{w}}" + "".join(f"{v:>{w}}" for v in row))
    if rep.get("no_prediction"):
        lines.append(
            f"{rep['no_prediction']} texts without tokens got no prediction: counted as wrong, not in the matrix"
        )
    return "\n".join(lines)
