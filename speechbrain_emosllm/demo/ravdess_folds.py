"""The RAVDESS fold protocol of the demo: ``--corpus ravdess --folds``.

Each fold runs the RAVDESS recipe's probes and emotion phase on its own
split (``speechbrain_emosllm.folds``: EmoBox's test actors, two valid
actors by a fixed rule, the rest train) in ``<output>/ravdess_folds/<fold>``;
every fold reads one feature cache, so each clip is encoded once. The
transcript modes (RAVDESS has two constant sentences) run on the first
fold only; ``ser_only`` and the probes on every fold. Writes
``<output>/ravdess_folds.json``: per fold the scores of every mode, probe
and ablation (``speechbrain_emosllm.ablations``) and how often
``ser_only`` agrees with the utterance token's own decision, then the
mean over folds and a paired bootstrap of ``ser_only`` minus each probe.
``--stacked_token`` trains with out-of-fold token posteriors and token
dropout (``STACKED``) in ``<fold>_stacked`` folders and writes
``ravdess_folds_stacked.json``.

Authors
 * speechbrain-emosllm contributors 2026
"""

import copy
import json
import os
import re
import time

from speechbrain_emosllm.ablations import ABLATIONS
from speechbrain_emosllm.demo.ravdess import (
    FULL,
    PROBES,
    QUICK,
    STACKED_EPOCHS,
    ravdess_overrides,
    recipe_env,
    run_script,
)
from speechbrain_emosllm.folds import (
    check_folds_present,
    fold_scores,
    paired_bootstrap,
    parse_folds,
    summarise,
    valid_actors_for,
)
from speechbrain_emosllm.labels import ravdess_labels
from speechbrain_emosllm.modes import EMOTION_MODES
from speechbrain_emosllm.stopwatch import PHASE_SECONDS_FILE
from speechbrain_emosllm.utterance_token_fit import TOKEN_FIT_FILE

# Stacking (``--stacked_token``); the dropout was set before any run, not
# chosen on a score.
STACKED = {"out_of_fold_token": True, "token_dropout": 0.3}
TOKEN = "utterance_token"


def actors_in(folder):
    """Actor numbers of the ``Actor_XX/`` folders in ``folder``.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> for a in ("Actor_02", "Actor_10", "notes"):
    ...     os.mkdir(os.path.join(root, a))
    >>> actors_in(root)
    [2, 10]
    """
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(int(n[6:]) for n in names if re.fullmatch(r"Actor_\d\d", n))


def read_answers(path):
    """Clip id -> predicted label, from a ``<mode>_predictions.json``."""
    answers = json.load(open(path, encoding="utf-8"))
    return {i: a["prediction"] for i, a in answers.items()}


def read_fold(folder):
    """References and answers of one finished fold.

    Arguments
    ---------
    folder : str
        The fold's experiment folder.

    Returns
    -------
    dict
        ``targets`` (clip id -> label) and ``predictions`` (row -> clip id
        -> label) of every mode tested, every ablation and the probes.
    """
    test = os.path.join(folder, "ser", "test_test")
    path = os.path.join(test, "ser_only_predictions.json")
    answers = json.load(open(path, encoding="utf-8"))
    targets = {i: a["target"] for i, a in answers.items()}
    predictions = {}
    for mode in EMOTION_MODES:
        path = os.path.join(test, f"{mode}_predictions.json")
        if os.path.exists(path):
            predictions[mode] = read_answers(path)
    for ablation in ABLATIONS:
        path = os.path.join(f"{test}_{ablation}", "ser_only_predictions.json")
        predictions[ablation] = read_answers(path)
    path = os.path.join(test, f"{TOKEN}_predictions.json")
    if os.path.exists(path):
        predictions[TOKEN] = read_answers(path)
    probes = json.load(
        open(os.path.join(folder, "linear_probe", "probe_results.json"))
    )
    for name in PROBES:
        if name in probes:
            predictions[name] = probes[name]["predictions"]
    return {"targets": targets, "predictions": predictions}


def phase_seconds(folder):
    """Where a finished fold's phase spent its time (``phase_seconds.json``).

    Returns
    -------
    dict
        ``steps`` (encoding, token fit, training, tests, ablations) and
        ``stages`` (each epoch's training and validation, each test with
        its modes), in seconds.
    """
    path = os.path.join(folder, "ser", PHASE_SECONDS_FILE)
    return json.load(open(path, encoding="utf-8"))


def agreement(first, second):
    """Share of the clips of ``first`` that ``second`` answers alike.

    Example
    -------
    >>> agreement({"a": "X", "b": "Y"}, {"a": "X", "b": "X"})
    0.5
    """
    return round(sum(second[i] == a for i, a in first.items()) / len(first), 4)


def fold_report(name, test, valid, answers, classes):
    """One fold's entry of ``ravdess_folds.json``."""
    given = answers["predictions"]
    rows = {
        row: fold_scores(answers["targets"], answer, classes)
        for row, answer in given.items()
    }
    token = given.get(TOKEN)
    return {
        "fold": name,
        "test_actors": test,
        "valid_actors": valid,
        "n_test": len(answers["targets"]),
        "modes": {m: rows[m] for m in EMOTION_MODES if m in rows},
        "baselines": {p: rows[p] for p in (*PROBES, TOKEN) if p in rows},
        "ablations": {a: rows[a] for a in ABLATIONS},
        "agreement_with_token": (
            agreement(given["ser_only"], token) if token else None
        ),
        "rows": rows,
    }


def run_folds(common, args, output, quick):
    """Runs every fold of ``args.folds``; returns the report.

    Arguments
    ---------
    common : dict
        The demo's model options.
    args : argparse.Namespace
        ``ravdess_folder``, ``folds``, ``label_set``, ``stacked_token``.
    output : str
        The demo's output folder (its ``p2_asr_lora`` is the start).
    quick : bool
        Tiny models (one short epoch).

    Returns
    -------
    dict
    """
    start = time.time()
    folds = parse_folds(args.folds)
    available = actors_in(args.ravdess_folder)
    check_folds_present(folds, available, args.ravdess_folder)
    classes = ravdess_labels(args.label_set)
    root = os.path.join(output, "ravdess_folds")
    suffix = "_stacked" if args.stacked_token else ""
    env = recipe_env()
    entries, answers = [], []
    for index, (name, test) in enumerate(folds):
        valid = valid_actors_for(test, available)
        fold_args = copy.copy(args)
        fold_args.test_actors = ",".join(map(str, test))
        fold_args.valid_actors = ",".join(map(str, valid))
        folder = os.path.join(root, name + suffix)
        phase = {
            **(QUICK if quick else FULL),
            **(STACKED if args.stacked_token else {}),
            "feature_cache_folder": os.path.join(root, "feature_cache"),
            "test_ablations": f"[{','.join(ABLATIONS)}]",
        }
        if args.stacked_token and not quick:
            phase["number_of_epochs"] = STACKED_EPOCHS
        if index:  # constant sentences: the transcript modes once
            phase["test_modes"] = "[ser_only]"
        print(f"\n== fold {name}: test {test}, valid {valid}")
        overrides = ravdess_overrides(common, phase, fold_args, output, folder)
        began = time.time()
        run_script("linear_probe.py", overrides, env)
        probed = time.time()
        run_script("train.py", overrides, env)
        answers.append(read_fold(folder))
        entries.append(fold_report(name, test, valid, answers[-1], classes))
        # What the training actors chose for the token (never a test actor).
        fit = os.path.join(folder, "ser", TOKEN_FIT_FILE)
        entries[-1]["token_fit"] = json.load(open(fit, encoding="utf-8"))
        entries[-1]["seconds"] = {
            "probes": round(probed - began, 1),
            "phase": round(time.time() - probed, 1),
            **phase_seconds(folder),
        }
    report = {
        "protocol": args.folds,
        "label_set": args.label_set,
        "stacked_token": STACKED if args.stacked_token else None,
        "transcript_modes_on": [folds[0][0]],
        "folds": entries,
        "summary": summarise(entries),
        "bootstrap": {
            f"ser_only_minus_{probe}": paired_bootstrap(
                answers, "ser_only", probe, classes
            )
            for probe in PROBES
        },
        "seconds": round(time.time() - start, 1),
    }
    for entry in entries:
        del entry["rows"]
    return report


def print_folds_table(report):
    """Mean over folds of every row, then the bootstrap interval."""
    print(f"\nRAVDESS {report['protocol']}: {len(report['folds'])} folds")
    print(f"{'':<24}{'WA':>7}{'UA':>7}{'macro-F1':>10}{'SD':>7}{'folds':>6}")
    for name, row in report["summary"].items():
        sd = row["macro_f1_sd"]
        print(
            f"{name:<24}{row['accuracy_mean']:>7.3f}"
            f"{row['balanced_accuracy_mean']:>7.3f}"
            f"{row['macro_f1_mean']:>10.3f}"
            f"{'' if sd is None else f'{sd:.3f}':>7}{row['folds']:>6}"
        )
    for fold in report["folds"]:
        spent = fold["seconds"]
        steps = ", ".join(f"{k} {v:.0f}" for k, v in spent["steps"].items())
        print(
            f"fold {fold['fold']}: probes {spent['probes']:.0f} s, "
            f"phase {spent['phase']:.0f} s ({steps})"
        )
    for probe in PROBES:
        boot = report["bootstrap"][f"ser_only_minus_{probe}"]
        print(
            f"ser_only - {probe} macro-F1: {boot['mean']:+.3f} "
            f"(95% CI {boot['ci95'][0]:+.3f} .. {boot['ci95'][1]:+.3f}, "
            f"{boot['draws']} paired draws)"
        )


def check_folds(spec, folder):
    """``--folds`` checked before any phase runs.

    Example
    -------
    >>> check_folds("emobox:9", "/nowhere")
    Traceback (most recent call last):
    ...
    ValueError: --folds emobox:9: EmoBox has folds 1-6, not [9]
    """
    check_folds_present(parse_folds(spec), actors_in(folder), folder)
