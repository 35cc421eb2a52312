#!/usr/bin/env python3
"""Which encoder layers should the fitted utterance token read?

With ``utterance_token_fit`` (the RAVDESS recipe) the utterance token is a
linear probe of the clip's mean frame, fitted before the phase with its L2
penalty (and layer weighting) picked on the valid actors. This script
fits that probe on the frames a RAVDESS run cached, for every single layer,
the plain mean of all layers and, with ``--mapper``, a QPMapper
checkpoint's learned mix, and prints valid and test macro-F1 per L2
penalty, plus, with ``--cv``, a macro-F1 over folds of the training actors
(grouped by actor: a less noisy choice than 2 valid actors, slower):

    python benchmarks/token_layers.py --experiment results/demo/ravdess \\
        --mapper results/demo/p2_asr_lora/save/CKPT+.../qpmapper.ckpt --cv

Authors
 * speechbrain-emosllm contributors 2026
"""

import argparse
import json
import os

import torch
from anchor_head import read_splits

from speechbrain_emosllm.linear_probe import (
    PENALTIES,
    probe_scores,
    train_probe,
)


def score(train, split, labels, l2):
    """Macro-F1 on ``split`` of a probe fitted on ``train`` (x, y)."""
    torch.manual_seed(0)
    probe = train_probe(train[0], train[1], len(labels), False, l2)
    ids = [str(i) for i in range(len(split[1]))]
    return probe_scores(probe, split[0], split[1], ids, labels)["macro_f1"]


def grouped_cv(x, y, speakers, labels, l2, folds=4):
    """Mean macro-F1 over folds of whole training actors."""
    actors = sorted(set(speakers.tolist()))
    scores = []
    for k in range(folds):
        held = torch.isin(speakers, torch.tensor(actors[k::folds]))
        train, test = (x[~held], y[~held]), (x[held], y[held])
        scores.append(score(train, test, labels, l2))
    return sum(scores) / folds


def main():
    """Prints one row per layer weighting and L2 penalty."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--mapper", help="a qpmapper.ckpt with layer_sum")
    parser.add_argument("--cv", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    labels = json.load(open(os.path.join(args.experiment, "ser/labels.json")))
    data = read_splits(args.experiment, labels)
    n_layers = data["train"][0].shape[1]
    weightings = {f"layer {i}": torch.eye(n_layers)[i] for i in range(n_layers)}
    weightings["mean of layers"] = torch.full((n_layers,), 1.0 / n_layers)
    if args.mapper:
        state = torch.load(args.mapper, map_location="cpu")
        weightings["mapper's mix"] = state["layer_sum.logits"].softmax(-1)
    manifest = os.path.join(args.experiment, "manifests", "train.json")
    speakers = torch.tensor(
        [int(row["spk_id"]) for row in json.load(open(manifest)).values()]
    )
    print(f"{'layers':<16}{'l2':>8}{'valid':>8}{'test':>8}{'cv':>8}")
    for name, weights in weightings.items():
        mixed = {
            split: (torch.einsum("bld,l->bd", x, weights)[:, None], y)
            for split, (x, y) in data.items()
        }
        for l2 in PENALTIES:
            valid = score(mixed["train"], mixed["valid"], labels, l2)
            test = score(mixed["train"], mixed["test"], labels, l2)
            cv = (
                f"{grouped_cv(*mixed['train'], speakers, labels, l2):8.3f}"
                if args.cv
                else f"{'':8}"
            )
            print(f"{name:<16}{l2:>8g}{valid:8.3f}{test:8.3f}{cv}", flush=True)


if __name__ == "__main__":
    main()
