"""Emotion classification metrics and the ASR loss-weight schedule.

Authors
 * speechbrain-emosllm contributors 2026
"""

import json

import numpy as np


class EmotionMetrics:
    """Accumulates emotion predictions and summarises them.

    Reports accuracy, macro-F1, per-class F1, the confusion matrix and the
    rate of invalid free-form answers (answers that named no valid label).

    Arguments
    ---------
    labels : list of str
        Class names, in the order of the confusion matrix.

    Example
    -------
    >>> metrics = EmotionMetrics(["Happy", "Sad"])
    >>> metrics.append(["a", "b", "c"], ["Happy", "Sad", "Sad"],
    ...                ["Happy", "Happy", "Sad"])
    >>> stats = metrics.summarize()
    >>> round(stats["accuracy"], 3), round(stats["macro_f1"], 3)
    (0.667, 0.667)
    >>> stats["confusion"]
    [[1, 1], [0, 1]]
    """

    def __init__(self, labels):
        self.labels = list(labels)
        self.ids, self.predictions, self.targets = [], [], []
        self.free_form = []

    def append(self, ids, predictions, targets, free_form=None):
        """Adds a batch of predictions.

        Arguments
        ---------
        ids : list of str
            Utterance ids.
        predictions : list of str
            Predicted labels (always valid: chosen by scoring).
        targets : list of str
            Reference labels.
        free_form : list of (str or None), optional
            Labels parsed from freely generated answers (None if invalid).
        """
        self.ids += list(ids)
        self.predictions += list(predictions)
        self.targets += list(targets)
        if free_form is not None:
            self.free_form += list(free_form)

    def summarize(self):
        """Computes the metrics.

        Returns
        -------
        dict
            ``accuracy``, ``macro_f1``, ``f1`` (per class), ``confusion``
            (rows: reference, columns: prediction), ``count``, and, if free
            answers were given, ``invalid_rate`` and ``free_form_accuracy``.
        """
        from sklearn.metrics import confusion_matrix, f1_score

        stats = {"count": len(self.targets)}
        if not self.targets:
            return stats
        targets, predictions = self.targets, self.predictions
        per_class = f1_score(
            targets,
            predictions,
            labels=self.labels,
            average=None,
            zero_division=0,
        )
        stats["accuracy"] = float(
            np.mean([p == t for p, t in zip(predictions, targets)])
        )
        # Macro-F1 over the classes present in the references, as in the
        # Odyssey 2024 challenge scoring.
        present = [label in set(targets) for label in self.labels]
        stats["macro_f1"] = float(np.mean(per_class[present]))
        stats["f1"] = dict(zip(self.labels, per_class.round(4).tolist()))
        stats["confusion"] = confusion_matrix(
            targets, predictions, labels=self.labels
        ).tolist()
        if self.free_form:
            stats["invalid_rate"] = float(
                np.mean([label is None for label in self.free_form])
            )
            stats["free_form_accuracy"] = float(
                np.mean([f == t for f, t in zip(self.free_form, targets)])
            )
        return stats

    def write_report(self, path_prefix, title=""):
        """Writes ``<prefix>.json``, ``.txt``, ``.png``, ``_predictions.json``.

        The last one maps each utterance id to its reference, prediction
        and parsed free-form answer.

        Arguments
        ---------
        path_prefix : str
            Path without extension.
        title : str
            Title of the text report and the plot.

        Returns
        -------
        dict
            The summary.
        """
        stats = self.summarize()
        with open(path_prefix + ".json", "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=2)
        with open(path_prefix + ".txt", "w", encoding="utf-8") as f:
            f.write(format_report(stats, self.labels, title))
        free = self.free_form or [None] * len(self.ids)
        predictions = {
            utt: {"target": t, "prediction": p, "free_form": f}
            for utt, p, t, f in zip(
                self.ids, self.predictions, self.targets, free
            )
        }
        with open(
            path_prefix + "_predictions.json", "w", encoding="utf-8"
        ) as f:
            json.dump(predictions, f, indent=1)
        if stats["count"]:
            plot_confusion(
                stats["confusion"], self.labels, path_prefix + ".png", title
            )
        return stats


def format_report(stats, labels, title=""):
    """Text report of a summary: metrics then confusion matrix.

    Arguments
    ---------
    stats : dict
        Output of ``EmotionMetrics.summarize``.
    labels : list of str
        Class names.
    title : str
        First line.

    Returns
    -------
    str

    Example
    -------
    >>> stats = {"count": 2, "accuracy": 0.5, "macro_f1": 0.33,
    ...          "f1": {"A": 0.67, "B": 0.0}, "confusion": [[1, 0], [1, 0]]}
    >>> print(format_report(stats, ["A", "B"]).splitlines()[-1])
    B                  1       0
    """
    lines = [title] if title else []
    for key in (
        "count",
        "accuracy",
        "macro_f1",
        "invalid_rate",
        "free_form_accuracy",
        "WER",
    ):
        if key in stats:
            lines.append(
                f"{key}: {stats[key]:.4f}"
                if isinstance(stats[key], float)
                else f"{key}: {stats[key]}"
            )
    if "f1" in stats:
        lines.append(
            "per-class F1: "
            + ", ".join(f"{k}={v:.3f}" for k, v in stats["f1"].items())
        )
        lines.append("confusion (rows: reference, columns: prediction)")
        lines.append(" " * 12 + "".join(f"{label[:7]:>8}" for label in labels))
        for label, row in zip(labels, stats["confusion"]):
            lines.append(f"{label[:12]:<12}" + "".join(f"{n:>8}" for n in row))
    return "\n".join(lines) + "\n"


def plot_confusion(confusion, labels, path, title=""):
    """Saves a confusion matrix as a PNG (rows normalised to recall).

    Arguments
    ---------
    confusion : list of list of int
        Counts, rows: reference, columns: prediction.
    labels : list of str
        Class names.
    path : str
        Output PNG path.
    title : str
        Plot title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion, dtype=float)
    recall = counts / counts.sum(1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(labels),) * 2)
    ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for (row, col), count in np.ndenumerate(counts):
        ax.text(
            col,
            row,
            int(count),
            ha="center",
            va="center",
            color="white" if recall[row, col] > 0.5 else "black",
        )
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
