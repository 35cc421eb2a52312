#!/usr/bin/env python3
"""Does emotion reach the LLM? SER-only training on cached frames.

A short loop over the recipe's own modules (QPMapper, SpeechLLM with LoRA,
PromptBuilder, label scoring) that trains SER-only answers on the frames a
RAVDESS run cached (``linear_probe.py`` or ``train.py`` with
``layer_weighting``) and prints, per epoch: the training cross-entropy of
the emotion token, valid SER-only accuracy / macro-F1, and how much the
mapper's outputs differ between valid clips relative to their RMS (near 0:
the LLM receives the same input for every clip). The recipe README's
"where the emotion was lost" table comes from it:

    python benchmarks/ser_only_signal.py \
        --experiment results/emosllm_ravdess/1986 \
        --llm results/demo/assets/smollm2-135m \
        [--no-summary] [--standardise-frames] \
        [--label-anchor 1.0] [--utterance-token]

``--label-anchor W`` adds the label anchor's loss (weight W) and also
prints the anchor's own valid accuracy (how well the mapper's outputs
point at the right class name: the ceiling of what the LLM can read).

Authors
 * speechbrain-emosllm contributors 2026
"""

import argparse
import json
import os
import random
import sys
import time

import torch
from peft import LoraConfig
from speechbrain.dataio.batch import PaddedBatch

from speechbrain_emosllm import PromptBuilder, QPMapper, SpeechLLM
from speechbrain_emosllm.decoding import EmotionDecoder
from speechbrain_emosllm.features import load_cached_features
from speechbrain_emosllm.label_anchor import LabelAnchor, label_embeddings
from speechbrain_emosllm.metrics import EmotionMetrics

RECIPE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "recipes", "RAVDESS"
)


def layer_norm(frames):
    """Layer norm without affine over the last axis."""
    return torch.nn.functional.layer_norm(frames, frames.shape[-1:])


def read_split(experiment, cache, split, labels):
    """(id, frames, emotion) of every clip of a split."""
    path = os.path.join(experiment, "manifests", f"{split}.json")
    manifest = json.load(open(path))
    return [
        (
            utt,
            load_cached_features(cache, utt, manifest[utt]["wav"]),
            manifest[utt]["emo"],
        )
        for utt in manifest
        if manifest[utt]["emo"] in labels
    ]


def build(args, labels, layers, train):
    """The mapper, the LLM with LoRA, the prompt builder and the scorer."""
    llm = SpeechLLM(
        args.llm,
        lora_config=LoraConfig(
            r=8,
            lora_alpha=16,
            lora_dropout=0.05,
            target_modules=["q_proj", "v_proj"],
            task_type="CAUSAL_LM",
        ),
    )
    mapper = QPMapper(
        train[0][1].shape[-1],
        llm.hidden_size,
        n_queries=32,
        d_model=768,
        nhead=8,
        num_layers=2,
        d_ffn=768,
        n_layers=layers,
        utterance_summary=args.summary,
        output_norm=True,
        utterance_token=args.utterance_token,
    )
    mapper.match_scale(llm.hf_model.get_input_embeddings().weight)
    builder = PromptBuilder(
        llm.tokenizer, labels, 32, system_prompt="You are a helpful assistant."
    )
    anchor = LabelAnchor(
        label_embeddings(
            llm.hf_model.get_input_embeddings().weight,
            builder.label_token_ids(),
        ),
        token_index=mapper.utterance_token_index,
    )
    return mapper, llm, builder, EmotionDecoder(llm, builder, 8), anchor


def batch_frames(items, standardise):
    """Padded frames (and relative lengths) of a list of clips."""
    frames = [f for _, f, _ in items]
    if standardise is not None:
        # Per dimension over the training frames, after the per-frame
        # layer norm that WeightedLayerSum applies.
        mean, std = standardise
        frames = [(layer_norm(f) - mean) / std for f in frames]
    padded = PaddedBatch([{"x": f} for f in frames])
    return padded.x.data, padded.x.lengths


def evaluate(mapper, decoder, anchor, items, labels, standardise):
    """SER-only accuracy, macro-F1, the outputs' spread across clips and the
    label anchor's accuracy."""
    mapper.eval()
    decoder.speech_llm.eval()
    metrics, outputs, hits = EmotionMetrics(labels), [], 0
    with torch.no_grad():
        for k in range(0, len(items), 16):
            chunk = items[k : k + 16]
            embeddings = mapper(*batch_frames(chunk, standardise))
            outputs.append(embeddings)
            guesses = anchor(embeddings).argmax(-1).tolist()
            hits += sum(labels[g] == e for g, (*_, e) in zip(guesses, chunk))
            out = decoder.run_mode(embeddings, "ser_only")
            metrics.append(
                [u for u, _, _ in chunk], out["labels"], [e for *_, e in chunk]
            )
    stats = metrics.summarize()
    out = torch.cat(outputs)
    spread = (out - out.mean(0)).pow(2).mean().sqrt() / out.pow(2).mean().sqrt()
    anchor_accuracy = hits / len(items)
    return stats["accuracy"], stats["macro_f1"], spread.item(), anchor_accuracy


def train_epoch(
    mapper, llm, builder, anchor, optimizer, items, args, standardise
):
    """One epoch of SER-only answers; mean emotion-token cross-entropy."""
    mapper.train()
    llm.train()
    items = random.sample(items, len(items))
    total, steps = 0.0, 0
    for k in range(0, len(items), args.batch_size):
        chunk = items[k : k + args.batch_size]
        examples = [
            builder.training_example("ser", "", emotion, random)
            for *_, emotion in chunk
        ]
        ids = PaddedBatch(
            [
                {
                    "ids": torch.tensor(e["input_ids"]),
                    "spans": torch.tensor(e["span_ids"]),
                }
                for e in examples
            ],
            per_key_padding_kwargs={"spans": {"value": -1}},
        )
        embeddings = mapper(*batch_frames(chunk, standardise))
        out = llm(
            embeddings,
            ids.ids.data,
            torch.tensor([len(e["input_ids"]) for e in examples]),
            torch.tensor([e["audio_start"] for e in examples]),
            ids.spans.data,
            torch.ones(3),
        )
        loss = out["emotion"]
        if args.label_anchor > 0:
            targets = torch.tensor([builder.labels.index(e) for *_, e in chunk])
            loss = loss + args.label_anchor * anchor.loss(embeddings, targets)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], 5)
        optimizer.step()
        total, steps = total + out["emotion"].item(), steps + 1
    return total / steps


def main():
    """Runs the loop (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--llm", required=True)
    parser.add_argument("--label_set", default="ravdess8")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch_size", type=int, default=12)
    parser.add_argument("--no-summary", dest="summary", action="store_false")
    parser.add_argument("--standardise-frames", action="store_true")
    parser.add_argument("--label-anchor", type=float, default=0.0)
    parser.add_argument("--utterance-token", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(RECIPE, "emosllm"))
    from ravdess_prepare import label_names

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    labels = label_names(args.label_set)
    caches = os.path.join(args.experiment, "feature_cache")
    cache = os.path.join(caches, sorted(os.listdir(caches))[0])
    data = {
        s: read_split(args.experiment, cache, s, labels)
        for s in ("train", "valid", "test")
    }
    layers = (
        data["train"][0][1].shape[1] if data["train"][0][1].dim() == 3 else None
    )
    mapper, llm, builder, decoder, anchor = build(
        args, labels, layers, data["train"]
    )
    standardise = None
    if args.standardise_frames:
        frames = layer_norm(torch.cat([f for _, f, _ in data["train"]]))
        standardise = (frames.mean(0), frames.std(0).clamp(min=1e-3))
    params = [
        p for p in [*mapper.parameters(), *llm.parameters()] if p.requires_grad
    ]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    print(vars(args), flush=True)
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        loss = train_epoch(
            mapper,
            llm,
            builder,
            anchor,
            optimizer,
            data["train"],
            args,
            standardise,
        )
        acc, f1, spread, anchored = evaluate(
            mapper, decoder, anchor, data["valid"], labels, standardise
        )
        print(
            f"epoch {epoch}: train emotion CE {loss:.3f}, valid SER-only "
            f"acc {acc:.3f} macro-F1 {f1:.3f}, label anchor acc "
            f"{anchored:.3f}, output spread/RMS {spread:.3f} "
            f"({time.time() - start:.0f} s)",
            flush=True,
        )
    acc, f1, _, _ = evaluate(
        mapper, decoder, anchor, data["test"], labels, standardise
    )
    print(f"test SER-only acc {acc:.3f} macro-F1 {f1:.3f}")


if __name__ == "__main__":
    main()
