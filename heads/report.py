"""Reports: per-class hP/hR/hF table, confusion matrix (PNG + Markdown), training curves (PNG).

Every report names the never-predicted-class convention of the metric it shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cache.metric import HierarchicalScores, format_table
from cache.taxonomy import CLASSES, NUM_CLASSES


def confusion_matrix(y_true, y_pred, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(C, C) counts, rows = truth, columns = prediction."""
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def confusion_markdown(cm: np.ndarray) -> str:
    """Confusion matrix as a Markdown table (rows = truth, columns = prediction)."""
    head = "| truth \\ pred | " + " | ".join(CLASSES) + " |"
    sep = "|---" * (len(CLASSES) + 1) + "|"
    rows = [
        f"| {CLASSES[i]} | " + " | ".join(str(int(v)) if v else "·" for v in cm[i]) + " |"
        for i in range(len(cm))
    ]
    return "\n".join([head, sep, *rows])


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, path: str | Path, title: str = "") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 8))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(NUM_CLASSES), CLASSES, rotation=90, fontsize=7)
    ax.set_yticks(range(NUM_CLASSES), CLASSES, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(cm[i, j])),
                    ha="center",
                    va="center",
                    fontsize=5,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046, label="row-normalised")
    ax.set_title(title or "confusion matrix")
    return _save(plt, fig, path, dpi=120)


def _save(plt, fig, path: str | Path, dpi: int) -> Path:
    """Lay out, write (creating the folder) and close a figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_curves(histories: dict[str, list[dict]], path: str | Path, title: str = "training curves") -> Path:
    """Train loss and validation hF per epoch for each named run."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.get_cmap("tab20").colors
    for i, (name, hist) in enumerate(histories.items()):
        if not hist:
            continue
        ep = [h["epoch"] for h in hist]
        style = {"color": colors[i % len(colors)], "linestyle": "-" if i < len(colors) else "--"}
        a1.plot(ep, [h["train_loss"] for h in hist], label=name, **style)
        if "val_hF" in hist[0]:
            a2.plot(ep, [h["val_hF"] for h in hist], label=name, **style)
    a1.set_xlabel("epoch")
    a1.set_ylabel("training loss")
    a2.set_xlabel("epoch")
    a2.set_ylabel("validation hF")
    a2.legend(fontsize=7)
    fig.suptitle(title)
    return _save(plt, fig, path, dpi=110)


def write_classification_report(
    out_dir: str | Path, name: str, y_true, y_pred, scores: HierarchicalScores, title: str = ""
) -> dict[str, Path]:
    """``<name>.md`` (scores, per-class table, confusion matrix) and ``<name>_confusion.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cm = confusion_matrix(y_true, y_pred)
    md = out / f"{name}.md"
    md.write_text(
        f"# {title or name}\n\n{format_table(scores)}\n\n## Confusion matrix (rows = truth)\n\n"
        f"{confusion_markdown(cm)}\n"
    )
    png = plot_confusion(cm, out / f"{name}_confusion.png", title or name)
    return {"markdown": md, "confusion_png": png}
