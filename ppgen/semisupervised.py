"""Backend-free parts of semi-supervised learning (Kingma et al., 2014): M1's classifier on
latent features and the classification report (M1's features come from the recipe,
``ppgen.recipes.vae.m1_features``).

M1 is a VAE trained on all the data; its posterior means ``E[z | x]`` are features for a
scikit-learn classifier trained on the labelled examples only. The classifier (logistic
regression or an RBF support-vector machine, each over a small grid of ``C``) is chosen on
the validation set, as the paper chose hyper-parameters (it used a transductive SVM, which
scikit-learn does not have).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppgen.data.labels import MISSING
from ppgen.errors import ConfigError

__all__ = [
    "CLASSIFIERS",
    "classification_report",
    "fit_m1_classifier",
    "save_confusion",
    "test_error_result",
    "test_error_summary",
]


def _logreg(c: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000, random_state=seed)


def _svm(c: float, seed: int) -> Any:
    from sklearn.svm import SVC

    return SVC(C=c, kernel="rbf", gamma="scale", random_state=seed)


# name -> factory(C, seed); every candidate sees standardised features. (scikit-learn is
# imported when a classifier is made, so the command line starts without it.)
CLASSIFIERS = {"logreg": _logreg, "svm": _svm}
C_GRID = (0.1, 1.0, 10.0, 100.0)


def fit_m1_classifier(
    features: np.ndarray,
    y: np.ndarray,
    valid_features: np.ndarray,
    valid_y: np.ndarray,
    *,
    seed: int = 0,
    classifiers: tuple[str, ...] = ("logreg", "svm"),
) -> tuple[Any, dict]:
    """Train each candidate on the labelled rows of ``features`` and keep the best on validation.

    Args:
        features: (N, latent) features of the training set.
        y: (N,) partial labels, ``-1`` where missing: only labelled rows are used.
        valid_features: Features of the validation set.
        valid_y: Its full labels.
        seed: Seed of the classifiers.
        classifiers: Names from :data:`CLASSIFIERS`.

    Returns:
        The fitted pipeline and ``{"classifier", "C", "valid_error", "candidates"}``.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    unknown = sorted(set(classifiers) - set(CLASSIFIERS))
    if unknown:
        raise ConfigError(f"unknown classifiers {unknown}; choose from {sorted(CLASSIFIERS)}")
    labelled = np.asarray(y) != MISSING
    x_l, y_l = features[labelled], np.asarray(y)[labelled]
    best, info, candidates = None, None, []
    for name in classifiers:
        for c in C_GRID:
            clf = make_pipeline(StandardScaler(), CLASSIFIERS[name](c, seed)).fit(x_l, y_l)
            error = float(np.mean(clf.predict(valid_features) != valid_y))
            candidates.append({"classifier": name, "C": c, "valid_error": error})
            if info is None or error < info["valid_error"]:
                best, info = clf, {"classifier": name, "C": c, "valid_error": error}
    return best, {**info, "candidates": candidates}


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    """Error rate and confusion matrix (rows: true class, columns: predicted)."""
    from sklearn.metrics import confusion_matrix

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    matrix = confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))
    return {"error": float(np.mean(y_true != y_pred)), "confusion": matrix.tolist()}


def test_error_result(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    num_classes: int,
    labels: int,
    epoch: int,
    started: float,
    **extra: Any,
) -> dict[str, Any]:
    """What ``ppgen eval`` reports for a classifier: ``test_error``, ``extra`` figures (e.g.
    the validation error), the number of ``labels`` it learnt from, the test set size ``n``,
    the checkpoint's ``epoch`` (1-based), the ``confusion`` matrix and the ``seconds`` since
    ``started`` (a ``time.perf_counter()`` reading)."""
    report = classification_report(y_true, y_pred, num_classes)
    return {
        "test_error": report["error"],
        **extra,
        "labels": labels,
        "n": len(y_true),
        "epoch": epoch,
        "confusion": report["confusion"],
        "seconds": time.perf_counter() - started,
    }


def test_error_summary(model: str, result: Mapping[str, Any]) -> str:
    """One line of a :func:`test_error_result`."""
    return (
        f"test error {100 * result['test_error']:.2f}% ({model}, {result['labels']} labels, "
        f"{result['n']} test examples, epoch {result['epoch']})"
    )


def save_confusion(model: str, result: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """The confusion matrix of a :func:`test_error_result` as a PNG titled with the error."""
    from ppgen import plots

    title = f"{model.upper()}, {result['labels']} labels: test error "
    title += f"{100 * result['test_error']:.2f}%"
    return plots.save_confusion_matrix(np.asarray(result["confusion"]), path, title)
