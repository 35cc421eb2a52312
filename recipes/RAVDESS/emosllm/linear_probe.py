#!/usr/bin/env python3
"""The baseline of the RAVDESS recipe: linear probes of the frozen encoder.

Same phase YAML, split, encoder and feature cache as ``train.py``; prints
and writes (``<experiment_folder>/linear_probe/probe_results.json``) the
test accuracy and macro-F1 of a probe of the last layer and of a learned
weighted sum of all layers:

    python linear_probe.py hparams/ser.yaml --data_folder=/data/RAVDESS

Authors
 * speechbrain-emosllm contributors 2026
"""

import json
import os
import sys

from speechbrain.utils.distributed import run_on_main
from train import class_names, prepare_data

from speechbrain_emosllm.dataio import dataio_prepare
from speechbrain_emosllm.linear_probe import (
    PENALTIES,
    pooled_split,
    select_and_test,
)
from speechbrain_emosllm.prompts import PromptBuilder
from speechbrain_emosllm.recipe import (
    cache_features,
    feature_folder,
    leave_process_group,
    load_phase,
)


def run_linear_probe(argv, prepare_data, class_names):
    """A recipe's baseline: probes of its phase YAML's split and encoder.

    Reads the same manifests and the same keyed feature cache as the
    recipe's training (encoding what is missing, with every layer), fits a
    last-layer and a weighted-layers probe, and writes
    ``<experiment_folder>/linear_probe/probe_results.json``.

    Arguments
    ---------
    argv : list of str
        The command line of the recipe's ``train.py`` (phase YAML first).
    prepare_data, class_names : callable
        From ``train.py``, as for ``speechbrain_emosllm.recipe.run_phase``.

    Returns
    -------
    dict
        Probe name -> test accuracy, macro-F1 and selection details.
    """
    hparams, run_opts = load_phase(
        argv,
        defaults={"layer_weighting": True},
        forced={
            "phase": "linear_probe",
            "previous_phase_folder": None,
            "feature_cache": True,
        },
    )
    if not hparams["skip_prep"]:
        run_on_main(prepare_data, args=[hparams])
    labels = class_names(hparams)
    hparams["feature_folder"] = feature_folder(hparams)
    builder = PromptBuilder(
        hparams["speech_llm"].tokenizer, labels, hparams["n_queries"]
    )
    train, valid, tests = dataio_prepare(hparams, builder)
    test = next(iter(tests.values()))
    device = run_opts.get("device") or "cpu"
    encoder = hparams["encoder"].to(device)
    cache_features(encoder, device, hparams, [train, valid, test])

    splits = {
        name: pooled_split(hparams["feature_folder"], data)
        for name, data in (("train", train), ("valid", valid), ("test", test))
    }
    results = {
        "linear_probe": select_and_test(splits, labels, False, PENALTIES)
    }
    if splits["train"][0].shape[1] > 1:
        results["weighted_layers_probe"] = select_and_test(
            splits, labels, True, PENALTIES
        )
    path = os.path.join(hparams["output_folder"], "probe_results.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    for name, result in results.items():
        print(
            f"{name}: test accuracy {result['accuracy']:.3f}, macro-F1 "
            f"{result['macro_f1']:.3f} (valid macro-F1 "
            f"{result['valid_macro_f1']:.3f}, l2 {result['l2']})"
        )
    leave_process_group()
    return results


if __name__ == "__main__":
    run_linear_probe(sys.argv[1:], prepare_data, class_names)
