#!/usr/bin/env python3
"""How far does the label anchor's classifier get on its own (no LLM)?

With ``qpmapper_utterance_token`` and ``label_anchor_weight`` (the RAVDESS
recipe), the SER-only answer reads one utterance token: a linear map of the
clip's standardised mean frame (layer-weighted), which the label anchor
pulls towards the LLM's embedding of the class name (cosine similarity
times ``scale``). The recipe logs that anchor's own decisions next to the
LLM's (``label_anchor_acc`` / ``label_anchor_macro_f1``): the LLM reads
what the anchor points at. This script trains that head alone on the
frames a RAVDESS run cached, like the recipe trains it (AdamW, mini-batches,
a few epochs), for a few settings and seeds, and prints valid and test
macro-F1 next to the linear probe of the same frames and split
(``<experiment>/linear_probe/probe_results.json``). It answers whether the
head's form and training regime, rather than the LLM's reading, is what
keeps the SER-only answer under the probe:

    python benchmarks/anchor_head.py --experiment results/demo/ravdess \\
        --llm results/demo/assets/smollm2-135m --scales 10 5 3 --epochs 4

``--regime probe`` trains the head the way the probe is trained instead
(full batch, training-set standardisation, L2 penalty picked on valid):
it separates the head's form from its training regime.

Authors
 * speechbrain-emosllm contributors 2026
"""

import argparse
import json
import os

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from speechbrain_emosllm.features import cached_feature_path
from speechbrain_emosllm.label_anchor import LabelAnchor, label_embeddings
from speechbrain_emosllm.linear_probe import PENALTIES, pooled_frames
from speechbrain_emosllm.metrics import EmotionMetrics
from speechbrain_emosllm.prompts import PromptBuilder


def read_splits(experiment, labels):
    """Pooled per-layer frames and class indices of train, valid, test."""
    manifests = {
        split: json.load(
            open(os.path.join(experiment, "manifests", f"{split}.json"))
        )
        for split in ("train", "valid", "test")
    }
    clips = {
        split: [(utt, row["wav"]) for utt, row in rows.items()]
        for split, rows in manifests.items()
    }
    root = os.path.join(experiment, "feature_cache")
    # The keyed cache folder that holds every clip (a run may leave others).
    folder = next(
        os.path.join(root, name)
        for name in sorted(os.listdir(root))
        if all(
            os.path.isfile(cached_feature_path(os.path.join(root, name), *c))
            for split in clips.values()
            for c in split
        )
    )
    return {
        split: (
            pooled_frames(folder, clips[split]),
            torch.tensor(
                [labels.index(row["emo"]) for row in manifests[split].values()]
            ),
        )
        for split in clips
    }


def train_head(data, names, scale, epochs, lr, seed, batch_size=12):
    """The anchor head (layer weights, standardisation, linear map, scaled
    cosine to the class-name embeddings) trained on the anchor loss only;
    returns a function giving class logits of pooled frames."""
    torch.manual_seed(seed)
    x, y = data["train"]
    layer_logits = torch.zeros(x.shape[1], requires_grad=True)
    norm = torch.nn.BatchNorm1d(x.shape[-1], affine=False, momentum=None)
    anchor = LabelAnchor(names, scale=scale, token_index=0)
    linear = torch.nn.Linear(x.shape[-1], names.shape[1])
    optimizer = torch.optim.AdamW(
        [layer_logits, *linear.parameters()], lr=lr, weight_decay=0.01
    )

    def logits(pooled, train=False):
        norm.train(train)
        mixed = torch.einsum("bld,l->bd", pooled, layer_logits.softmax(-1))
        return anchor(linear(norm(mixed)).unsqueeze(1))

    for _ in range(epochs):
        order = torch.randperm(len(y))
        for start in range(0, len(y), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            F.cross_entropy(logits(x[index], True), y[index]).backward()
            optimizer.step()
    return logits


def train_head_like_probe(data, names, scale, l2, seed, steps=300):
    """The same head trained the way the linear probe is: full batch, Adam
    lr 0.01, inputs standardised with the training statistics, an L2
    penalty on the linear map (the caller picks it on valid)."""
    torch.manual_seed(seed)
    x, y = data["train"]
    mean, std = x.mean(0), x.std(0).clamp(min=1e-5)
    layer_logits = torch.zeros(x.shape[1], requires_grad=True)
    anchor = LabelAnchor(names, scale=scale, token_index=0)
    linear = torch.nn.Linear(x.shape[-1], names.shape[1])
    optimizer = torch.optim.Adam([layer_logits, *linear.parameters()], lr=0.01)

    def logits(pooled):
        standard = (pooled - mean) / std
        mixed = torch.einsum("bld,l->bd", standard, layer_logits.softmax(-1))
        return anchor(linear(mixed).unsqueeze(1))

    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(logits(x), y)
        (loss + l2 * linear.weight.pow(2).sum()).backward()
        optimizer.step()
    return logits


def probe_regime_row(data, names, scale, labels, seeds):
    """One row: per seed, the L2 penalty with the best valid macro-F1."""
    valid, test = [], []
    for seed in range(seeds):
        heads = [
            train_head_like_probe(data, names, scale, l2, seed)
            for l2 in PENALTIES
        ]
        scores = [
            (
                macro_f1(h, data["valid"], labels),
                macro_f1(h, data["test"], labels),
            )
            for h in heads
        ]
        best = max(scores, key=lambda score: score[0])  # valid only
        valid.append(best[0])
        test.append(best[1])
    return valid, test


def print_row(name, valid, test):
    """One line of the table: mean valid and test macro-F1 over seeds."""
    print(
        f"{name} valid {sum(valid) / len(valid):.3f}  "
        f"test {sum(test) / len(test):.3f}  "
        f"(test by seed {', '.join(f'{t:.3f}' for t in test)})",
        flush=True,
    )


def macro_f1(logits, data, labels):
    """Macro-F1 of the head's decisions on one split."""
    x, y = data
    metrics = EmotionMetrics(labels)
    with torch.no_grad():
        guesses = logits(x).argmax(-1).tolist()
    ids = [str(i) for i in range(len(y))]
    metrics.append(ids, [labels[g] for g in guesses], [labels[t] for t in y])
    return metrics.summarize()["macro_f1"]


def main():
    """Parses the command line and prints one row per setting."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--llm", required=True)
    parser.add_argument("--scales", type=float, nargs="+", default=[10.0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[4])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--regime",
        choices=("recipe", "probe"),
        default="recipe",
        help="recipe: AdamW mini-batches for --epochs; probe: the linear "
        "probe's full-batch fit, L2 penalty chosen on valid",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    labels_path = os.path.join(args.experiment, "ser", "labels.json")
    labels = json.load(open(labels_path))
    table = (
        AutoModelForCausalLM.from_pretrained(args.llm)
        .get_input_embeddings()
        .weight.detach()
    )
    builder = PromptBuilder(AutoTokenizer.from_pretrained(args.llm), labels, 1)
    names = label_embeddings(table, builder.label_token_ids())
    data = read_splits(args.experiment, labels)
    probe = os.path.join(args.experiment, "linear_probe", "probe_results.json")
    if os.path.isfile(probe):
        for name, result in json.load(open(probe)).items():
            print(
                f"{name:<28} valid {result['valid_macro_f1']:.3f}  "
                f"test {result['macro_f1']:.3f}"
            )
    for scale in args.scales:
        if args.regime == "probe":
            valid, test = probe_regime_row(
                data, names, scale, labels, args.seeds
            )
            print_row(f"anchor head s={scale:<4g} probe regime", valid, test)
            continue
        for epochs in args.epochs:
            valid, test = [], []
            for seed in range(args.seeds):
                head = train_head(data, names, scale, epochs, args.lr, seed)
                valid.append(macro_f1(head, data["valid"], labels))
                test.append(macro_f1(head, data["test"], labels))
            print_row(
                f"anchor head s={scale:<4g} ep={epochs:<2d}    ", valid, test
            )


if __name__ == "__main__":
    main()
