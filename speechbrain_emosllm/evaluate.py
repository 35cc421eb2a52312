"""``emosllm-eval``: scores an exported model on a labelled folder.

    emosllm-eval --model exported_model --csv clips.csv [--mode ser_only]
        [--data-classes-only]

The CSV has the columns ``path,label`` (paths relative to the CSV's own
folder, or absolute). One strict JSON object goes to stdout: ``n`` (clips
scored), ``accuracy``, ``balanced_accuracy`` (mean recall over the classes
present), ``macro_f1`` (over the classes present), ``per_class``,
``confusion`` (rows: reference, columns: prediction, in the order of
``classes``), ``classes``, and ``failed``: every row whose audio could not
be scored, with its line and error (counted in ``n_failed``, never
dropped silently). A label the model does not know is a usage error that
names it and its line. With ``--data-classes-only`` the answer is the
likeliest of the classes present in the CSV (the usual cross-corpus rule).

Authors
 * speechbrain-emosllm contributors 2026
"""

import argparse
import csv
import json
import os
import sys
import tempfile

from speechbrain_emosllm.cli import device_problem, model_folder_problem
from speechbrain_emosllm.labels import LABELS_FILE
from speechbrain_emosllm.modes import AUDIO_ONLY_MODES, DEFAULT_MODE


class UsageError(ValueError):
    """A problem with the command's inputs (exit status 2)."""


def read_labelled_csv(path, known_labels):
    r"""``(line, audio path, label)`` of each row of a ``path,label`` CSV.

    Arguments
    ---------
    path : str
        The CSV file.
    known_labels : list of str
        The model's classes.

    Returns
    -------
    list of (int, str, str)

    Example
    -------
    >>> folder = tempfile.mkdtemp()
    >>> csv_path = os.path.join(folder, "clips.csv")
    >>> _ = open(csv_path, "w").write("path,label\na.wav,Sad\nb.wav,Joy\n")
    >>> try:
    ...     read_labelled_csv(csv_path, ["Sad", "Happy"])
    ... except UsageError as error:
    ...     print(str(error).split(": ", 1)[1])
    line 3: label 'Joy' is not a class of the model (Sad, Happy).
    """
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such CSV file.")
    folder = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label"} - set(reader.fieldnames or [])
        if missing:
            raise UsageError(
                f"{path}: needs the columns path,label (missing: "
                f"{', '.join(sorted(missing))})."
            )
        rows = []
        for row in reader:
            line = reader.line_num
            label = (row["label"] or "").strip()
            if label not in known_labels:
                raise UsageError(
                    f"{path}: line {line}: label '{label}' is not a class of "
                    f"the model ({', '.join(known_labels)})."
                )
            audio = os.path.join(folder, (row["path"] or "").strip())
            rows.append((line, audio, label))
    if not rows:
        raise UsageError(f"{path}: no rows to score.")
    return rows


def score(predictions, targets, classes):
    """The metrics of ``emosllm-eval`` (see the module docstring).

    Arguments
    ---------
    predictions, targets : list of str
        Predicted and reference labels.
    classes : list of str
        The classes, in the confusion matrix's order.

    Returns
    -------
    dict

    Example
    -------
    >>> out = score(["a", "b", "b"], ["a", "a", "b"], ["a", "b"])
    >>> out["accuracy"], out["balanced_accuracy"], out["confusion"]
    (0.6667, 0.75, [[1, 1], [0, 1]])
    """
    from sklearn.metrics import (
        confusion_matrix,
        precision_recall_fscore_support,
    )

    present = [c for c in classes if c in set(targets)]
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predictions, labels=classes, zero_division=0
    )
    per_class = {
        c: {
            "precision": round(float(p), 4),
            "recall": round(float(r), 4),
            "f1": round(float(f), 4),
            "support": int(s),
        }
        for c, p, r, f, s in zip(classes, precision, recall, f1, support)
    }
    correct = sum(p == t for p, t in zip(predictions, targets))

    def mean(key):  # over the classes present in the references
        return sum(per_class[c][key] for c in present) / len(present)

    return {
        "n": len(targets),
        "accuracy": round(correct / len(targets), 4),
        "balanced_accuracy": round(mean("recall"), 4),
        "macro_f1": round(mean("f1"), 4),
        "per_class": per_class,
        "confusion": confusion_matrix(
            targets, predictions, labels=classes
        ).tolist(),
        "classes": list(classes),
    }


def evaluate(model, rows, mode, classes):
    """Scores every row; failures are listed, not dropped.

    Arguments
    ---------
    model : speechbrain_emosllm.inference.EmotionLLM
        Loaded model.
    rows : list of (int, str, str)
        ``read_labelled_csv``'s rows.
    mode : str
        Inference mode.
    classes : list of str
        The classes the answer is chosen from.

    Returns
    -------
    dict
    """
    predictions, targets, failed = [], [], []
    for line, path, label in rows:
        try:
            signal = model.load_audio(path)
            result = model.predict_signal(signal, mode, name=path)
        except Exception as error:  # any failure is this row's
            failed.append({"line": line, "path": path, "error": str(error)})
            continue
        probabilities = result["probabilities"]
        predictions.append(max(classes, key=probabilities.__getitem__))
        targets.append(label)
    if not targets:
        raise UsageError(f"no row could be scored ({len(failed)} failed).")
    report = score(predictions, targets, classes)
    report.update(mode=mode, n_failed=len(failed), failed=failed)
    return report


def main(argv=None):
    """Entry point of ``emosllm-eval``; returns the exit status.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (``sys.argv[1:]`` when None).

    Returns
    -------
    int
        0, 1 if some rows failed, 2 for a usage error.
    """
    parser = argparse.ArgumentParser(
        prog="emosllm-eval", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", required=True, help="exported model")
    parser.add_argument("--csv", required=True, help="path,label CSV file")
    parser.add_argument(
        "--mode", default=DEFAULT_MODE, choices=AUDIO_ONLY_MODES
    )
    parser.add_argument(
        "--data-classes-only",
        action="store_true",
        help="choose among the classes present in the CSV only",
    )
    parser.add_argument("--trust-model", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--savedir", default=None)
    args = parser.parse_args(argv)
    problem = model_folder_problem(args.model) or device_problem(args.device)
    if problem:
        parser.error(problem)
    try:
        with open(os.path.join(args.model, LABELS_FILE), encoding="utf-8") as f:
            labels = json.load(f)
        rows = read_labelled_csv(args.csv, labels)
        if not args.trust_model:
            from speechbrain_emosllm.model_trust import check_model_folder

            check_model_folder(args.model)
    except (OSError, ValueError) as error:
        parser.exit(2, f"emosllm-eval: {error}\n")
    classes = labels
    if args.data_classes_only:
        present = {label for _, _, label in rows}
        classes = [label for label in labels if label in present]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from speechbrain_emosllm.inference import EmotionLLM

    model = EmotionLLM.from_hparams(
        source=args.model,
        savedir=args.savedir or tempfile.mkdtemp(prefix="emosllm-"),
        run_opts={"device": args.device},
    )
    try:
        report = evaluate(model, rows, args.mode, classes)
    except UsageError as error:
        parser.exit(1, f"emosllm-eval: {error}\n")
    print(json.dumps(report, allow_nan=False))
    return 1 if report["n_failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
