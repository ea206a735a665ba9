# SPDX-License-Identifier: MIT
"""Predictions of a model on a dataset, and the validation metric the trainer selects models by.

`predict` runs a model in eval mode over a dataset (any kind from the registry) and returns the
positive-class probability per sample for binary tasks, the softmax rows for multi-class ones,
with the labels and manifest rows beside them.

Example:
    >>> pred = predict(model, build_dataset("synthetic", None, rows, recipe.data, train=False))
    >>> validation_metric(pred, "auc")
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ppi_cli.ppi.looks import swapped_looks
from ppi_cli.reports.metrics import youden_point

__all__ = ["Predictions", "predict", "predict_in_other_looks", "joined", "validation_metric", "model_inputs",
           "autocast", "operating_threshold", "stored_threshold", "DEFAULT_THRESHOLD"]

DEFAULT_THRESHOLD = 0.5  # without a validation split to choose on (and for checkpoints older than the choice)


@dataclass
class Predictions:
    """Model outputs on a dataset, in dataset order.

    Attributes:
        scores: `(N,)` probability of the positive class (binary) or `(N, K)` softmax rows.
        labels: `(N,)` labels (0/1 floats for binary tasks, class indices otherwise).
        indices: `(N,)` manifest rows of the samples.
    """

    scores: np.ndarray
    labels: np.ndarray
    indices: np.ndarray

    @property
    def binary(self) -> bool:
        """One score per sample."""
        return self.scores.ndim == 1


def model_inputs(batch: dict, device: torch.device | str, non_blocking: bool = False,
                 channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The image (or volume) tensor and the positions (volumes only) of a collated batch, on `device`."""
    x = batch["image"].to(device, non_blocking=non_blocking).float()
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    positions = batch.get("positions")
    return x, None if positions is None else positions.to(device, non_blocking=non_blocking)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA (bfloat16 where supported, else float16); a no-op elsewhere."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, *, device: str | torch.device = "cpu", batch_size: int = 32,
            num_workers: int = 0, amp: bool = False) -> Predictions:
    """Run `model` in eval mode over `dataset` and collect probabilities, labels and manifest rows.

    Args:
        model: A model from `ppi_cli.models` (image classifier or multi-view model).
        dataset: A dataset from `build_dataset(..., train=False)`.
        device: Where to run.
        batch_size: Samples (volumes) per forward.
        num_workers: DataLoader worker processes.
        amp: Mixed precision on CUDA.

    Returns:
        `Predictions` in dataset order. The model's train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    scores, labels, indices = [], [], []
    try:
        for batch in loader:
            x, positions = model_inputs(batch, device)
            scores.append(_probabilities(model, x, positions, device, amp))
            labels.append(batch["label"].numpy())
            indices.append(np.asarray(batch["index"]))
    finally:
        model.train(was_training)
    return _collected(scores, labels, indices)


def _probabilities(model: nn.Module, x: torch.Tensor, positions: torch.Tensor | None, device: torch.device,
                   amp: bool) -> np.ndarray:
    """The positive-class probability (one logit) or the softmax rows of one batch."""
    with autocast(device, amp):
        logits = model(x) if positions is None else model(x, positions)
    logits = logits.float()
    prob = torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
    return prob.cpu().numpy()


def _collected(scores: list[np.ndarray], labels: list[np.ndarray], indices: list[np.ndarray]) -> Predictions:
    if not scores:
        return Predictions(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
    return Predictions(scores=np.concatenate(scores).astype(np.float64), labels=np.concatenate(labels),
                       indices=np.concatenate(indices).astype(np.int64))


DONOR_POOL = 16  # samples per class kept as donors of looks (the first of each class, in dataset order)


@torch.no_grad()
def predict_in_other_looks(model: nn.Module, dataset: Dataset, *, kind: str, sigma: float,
                           device: str | torch.device = "cpu", batch_size: int = 32, num_workers: int = 0,
                           amp: bool = False, level: str = "swap") -> Predictions:
    """`predict` on each sample put in the look of a sample of another class, with its own label
    (`eval.select_on: looks`).

    The donors are the first `DONOR_POOL` samples of each class in dataset order; the i-th sample of the
    dataset takes the (i mod n)-th of the n donors whose class differs from its own. A look is
    `ppi.looks.image_look` of the whole image (`kind` blur with std `sigma`, or columns; `level` as
    `ppi.look_level`); the sample keeps its content and its positions. Samples with no donor of another
    class (one class only) are left out.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    donors: list[tuple[int, torch.Tensor]] = []
    kept: dict[int, int] = {}
    for batch in loader:
        for image, label in zip(batch["image"], batch["label"].tolist(), strict=True):
            if kept.get(int(label), 0) < DONOR_POOL:
                kept[int(label)] = kept.get(int(label), 0) + 1
                donors.append((int(label), image.float()))
    scores, labels, indices = [], [], []
    seen = 0
    try:
        for batch in loader:
            x, positions = model_inputs(batch, device)
            label = batch["label"].tolist()
            picks, rows = [], []
            for j, y in enumerate(label):
                others = [image for cls, image in donors if cls != int(y)]
                if others:
                    picks.append(others[(seen + j) % len(others)])
                    rows.append(j)
            seen += len(label)
            if not rows:
                continue
            keep = torch.tensor(rows)
            _, relooked = swapped_looks(x[keep], torch.stack(picks).to(device), kind=kind, sigma=sigma, level=level)
            scores.append(_probabilities(model, relooked, None if positions is None else positions[keep], device,
                                         amp))
            labels.append(batch["label"][keep].numpy())
            indices.append(np.asarray(batch["index"])[rows])
    finally:
        model.train(was_training)
    return _collected(scores, labels, indices)


def joined(*parts: Predictions) -> Predictions:
    """Several predictions as one (a metric or loss over all of them)."""
    kept = [p for p in parts if p.labels.size]
    if not kept:
        return parts[0]
    return Predictions(scores=np.concatenate([p.scores for p in kept]),
                       labels=np.concatenate([p.labels for p in kept]),
                       indices=np.concatenate([p.indices for p in kept]))


def validation_metric(pred: Predictions, metric: str) -> float:
    """AUC (binary; one-vs-rest macro for multi-class) or accuracy; NaN when undefined (one class only)."""
    from sklearn.metrics import roc_auc_score

    if pred.labels.size == 0:
        return float("nan")
    if metric == "accuracy":
        guess = (pred.scores >= 0.5).astype(int) if pred.binary else pred.scores.argmax(axis=1)
        return float(np.mean(guess == pred.labels.astype(int)))
    present = np.unique(pred.labels.astype(int))
    if len(present) < 2:
        return float("nan")
    if pred.binary:
        return float(roc_auc_score(pred.labels.astype(int), pred.scores))
    if len(present) < pred.scores.shape[1]:
        return float("nan")  # one-vs-rest needs every class in the validation rows
    return float(roc_auc_score(pred.labels.astype(int), pred.scores, multi_class="ovr"))


def operating_threshold(pred: Predictions | None) -> dict[str, object]:
    """The operating threshold of a binary model, chosen on its validation predictions (Youden's J).

    The checkpoint of an epoch stores the threshold of that epoch's validation predictions, so
    `best.pt` carries the one of the kept epoch. Without validation rows, or with one class only,
    the threshold is `DEFAULT_THRESHOLD` and `source` says why; multi-class models take the argmax.

    Returns:
        `{"value": float | None, "source": str}` (plain JSON for the checkpoint meta).
    """
    if pred is not None and not pred.binary:
        return {"value": None, "source": "argmax (multi-class)"}
    if pred is None or pred.labels.size == 0:
        return {"value": DEFAULT_THRESHOLD, "source": "default 0.5 (no validation split)"}
    if np.unique(pred.labels.astype(int)).size < 2:
        return {"value": DEFAULT_THRESHOLD, "source": "default 0.5 (one class in the validation split)"}
    value = youden_point(pred.labels.tolist(), pred.scores.tolist())[0]
    return {"value": float(min(value, 1.0)), "source": "validation Youden J"}  # +inf (no positive call) -> 1


def stored_threshold(meta: dict) -> tuple[float, str | None]:
    """The threshold a checkpoint stores, and a note when it stores none (older checkpoints: 0.5)."""
    stored = meta.get("threshold")
    if isinstance(stored, dict) and isinstance(stored.get("value"), (int, float)):
        return float(stored["value"]), None
    return DEFAULT_THRESHOLD, "the checkpoint stores no operating threshold (written before ppi chose one): 0.5"
