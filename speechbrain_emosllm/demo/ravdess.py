"""The offline demo on real acted speech: RAVDESS after the eSpeak phases.

RAVDESS has two sentences, nothing to teach ASR: the demo's eSpeak P1 and
P2 teach the QPMapper and LoRA to listen, then the RAVDESS recipe's emotion
phase (``recipes/RAVDESS/emosllm``) trains on the train actors and is tested
on held-out actors, next to the linear probes of the same frozen frames
(the recipe's ``linear_probe.py``). Results go to
``<output>/ravdess_results.json``.

Authors
 * speechbrain-emosllm contributors 2026
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from speechbrain_emosllm.modes import EMOTION_MODES

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "RAVDESS" / "emosllm"
PROBES = ("linear_probe", "weighted_layers_probe")

# The emotion phase on 2 CPU cores (see the recipe README for what was
# measured): batch 12, every test mode, 1 epoch. The valid actors kept the
# first epoch in every plain run: the default split (1 of 4; valid
# ser_only macro-F1 0.682, 0.635, 0.641, 0.657) and EmoBox folds 2 and 5
# (1 of 2). The stacked token kept its second epoch of 2 on both folds, so
# it trains ``STACKED_EPOCHS``.
FULL = {
    "number_of_epochs": 1,
    "lr": 0.001,
    "batch_size": 12,
    "test_batch_size": 16,
}
STACKED_EPOCHS = 2
QUICK = {"number_of_epochs": 1, "lr": 0.003, "batch_size": 8}


def ravdess_overrides(common, phase, args, output, experiment_folder=None):
    """Command-line overrides of the RAVDESS recipe for the demo.

    Arguments
    ---------
    common : dict
        The demo's options that choose the models (assets, sizes).
    phase : dict
        Phase settings (``FULL`` or ``QUICK``).
    args : argparse.Namespace
        ``ravdess_folder``, ``valid_actors``, ``test_actors``,
        ``label_set``.
    output : str
        The demo's output folder (its ``p2_asr_lora`` is the start).
    experiment_folder : str, optional
        Where the recipe writes (default ``<output>/ravdess``).

    Returns
    -------
    list of str

    Example
    -------
    >>> from argparse import Namespace
    >>> args = Namespace(ravdess_folder="/r", valid_actors="13,14",
    ...                  test_actors="15-18", label_set="ravdess8")
    >>> out = ravdess_overrides({"lr": 1}, {"lr": 0.1}, args, "/o")
    >>> "--lr=0.1" in out, "--lr=1" in out
    (True, False)
    """
    options = dict(common)
    options.update(
        {
            "data_folder": args.ravdess_folder,
            "experiment_folder": experiment_folder
            or os.path.join(output, "ravdess"),
            "previous_phase_folder": os.path.join(output, "p2_asr_lora"),
            "valid_actors": args.valid_actors,
            "test_actors": args.test_actors,
            "label_set": args.label_set,
        }
    )
    options.update(phase)
    return [f"--{key}={value}" for key, value in options.items()]


def recipe_env():
    """The environment of the recipe's scripts: offline, this package."""
    return dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(RECIPE.parents[2])] + sys.path),
    )


def run_script(script, overrides, env):
    """Runs one of the recipe's scripts on ``hparams/ser.yaml``."""
    result = subprocess.run(
        [sys.executable, script, "hparams/ser.yaml", *overrides],
        cwd=RECIPE,
        env=env,
    )
    if result.returncode != 0:
        raise SystemExit(f"RAVDESS {script} failed (exit {result.returncode})")


def collect_results(output, label_set):
    """The ``ravdess_results.json`` content of a finished run.

    Arguments
    ---------
    output : str
        The demo's output folder.
    label_set : str
        The label set that was used.

    Returns
    -------
    dict
    """
    folder = os.path.join(output, "ravdess")
    test = os.path.join(folder, "ser", "test_test")
    summary = json.load(open(os.path.join(test, "summary.json")))
    manifest = json.load(open(os.path.join(folder, "manifests", "test.json")))
    probes = json.load(
        open(os.path.join(folder, "linear_probe", "probe_results.json"))
    )
    return {
        "label_set": label_set,
        "test_actors": sorted({int(i["spk_id"]) for i in manifest.values()}),
        "n_test": len(manifest),
        "modes": {
            mode: {
                "accuracy": summary[f"{mode}_acc"],
                "macro_f1": summary[f"{mode}_macro_f1"],
                "confusion_png": os.path.join(test, f"{mode}.png"),
            }
            for mode in EMOTION_MODES
            if f"{mode}_acc" in summary
        },
        "WER": summary.get("joint_generated_WER"),
        "baselines": {
            name: {k: probes[name][k] for k in ("accuracy", "macro_f1")}
            for name in PROBES
            if name in probes
        },
    }


def print_ravdess_table(report):
    """The results table of the terminal."""
    print(
        f"\nRAVDESS {report['label_set']}, {report['n_test']} clips of "
        f"held-out actors {report['test_actors']}"
    )
    print(f"{'':<24}{'acc':>7}{'macro-F1':>10}")
    rows = list(report["modes"].items()) + list(report["baselines"].items())
    for name, entry in rows:
        print(f"{name:<24}{entry['accuracy']:>7.3f}{entry['macro_f1']:>10.3f}")


def run_ravdess(common, args, output, quick):
    """Probes, trains and tests the RAVDESS phase; returns the report.

    Arguments
    ---------
    common : dict
        The demo's model options.
    args : argparse.Namespace
        The demo's arguments (RAVDESS folder, actors, label set).
    output : str
        The demo's output folder.
    quick : bool
        Tiny models (one short epoch).

    Returns
    -------
    dict
    """
    env = recipe_env()
    overrides = ravdess_overrides(
        common, QUICK if quick else FULL, args, output
    )
    run_script("linear_probe.py", overrides, env)
    run_script("train.py", overrides, env)
    report = collect_results(output, args.label_set)
    with open(
        os.path.join(output, "ravdess_results.json"), "w", encoding="utf-8"
    ) as f:
        json.dump(report, f, indent=2)
    print_ravdess_table(report)
    return report
