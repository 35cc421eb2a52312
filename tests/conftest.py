"""Shared fixtures: tiny random models and a few generated clips.

Everything is built locally (no Hub access): a tiny WavLM and a tiny Llama
with a ChatML tokenizer are saved to a temporary folder and loaded through
the same ``from_pretrained`` / SpeechBrain lobe code that real weights use.
"""

import json
import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "MSP-Podcast", "emosllm")
sys.path.insert(0, RECIPE)

LABELS = ["Neutral", "Happy", "Sad", "Angry"]
WORDS = ["yes", "no", "cat", "sat", "mat", "the"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Folders of a tiny WavLM encoder and a tiny Llama chat LLM."""
    from speechbrain_emosllm.testing import make_tiny_llm, make_tiny_wavlm

    root = tmp_path_factory.mktemp("models")
    return {
        "encoder": make_tiny_wavlm(str(root / "wavlm")),
        "llm": make_tiny_llm(str(root / "llm")),
    }


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Manifests (train/valid/test) of short tone clips, 4 classes."""
    from speechbrain_emosllm.testing import write_tone_clips

    root = tmp_path_factory.mktemp("corpus")
    manifests = {}
    for split, count in (("train", 16), ("valid", 8), ("test", 8)):
        specs = [
            (f"{split}_{i}", 0.4 + 0.05 * (i % 3), i % 4) for i in range(count)
        ]
        paths = write_tone_clips(str(root / "audio"), specs)
        manifests[split] = {
            utt: {
                "wav": paths[utt],
                "duration": seconds,
                "wrd": f"{WORDS[k]} {WORDS[(k + 1) % 6]}",
                "emo": LABELS[k],
                "spk_id": str(i % 2),
            }
            for i, (utt, seconds, k) in enumerate(specs)
        }
    names = {"train": "train.json", "valid": "valid.json", "test": "test.json"}
    for split, name in names.items():
        with open(root / name, "w", encoding="utf-8") as f:
            json.dump(manifests[split], f)
    return str(root)


def recipe_overrides(tiny_models, tiny_corpus, output, **extra):
    """Command-line overrides that run the recipe on the tiny setup."""
    options = {
        "data_folder": tiny_corpus,
        "manifest_folder": tiny_corpus,
        "skip_prep": True,
        "experiment_folder": output,
        "n_classes": 4,
        "encoder_source": tiny_models["encoder"],
        "encoder_dim": 32,
        "llm_preset": "smollm2-135m-instruct",
        "llm_source": tiny_models["llm"],
        "llm_dim": 64,
        "n_queries": 4,
        "batch_size": 4,
        "test_batch_size": 4,
        "num_workers": 0,
        "number_of_epochs": 1,
        "lr": 0.003,
        "max_new_tokens": 8,
    }
    options.update(extra)
    return [f"--{key}={value}" for key, value in options.items()]


PHASES = ["p1_asr", "p2_asr_lora", "p3_joint"]


def run(args, cwd=RECIPE, merge_output=True):
    """Runs python with ``args``; ``.stdout`` holds the log when merged."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        text=True,
        timeout=900,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
    )


def train(phase, overrides):
    """Runs one phase of the recipe."""
    return run(["train.py", f"hparams/{phase}.yaml", *overrides])


@pytest.fixture(scope="session")
def curriculum(tiny_models, tiny_corpus, tmp_path_factory):
    """P1 -> P2 -> P3 -> test on the tiny setup (float32 feature cache)."""
    output = str(tmp_path_factory.mktemp("results"))
    overrides = recipe_overrides(
        tiny_models,
        tiny_corpus,
        output,
        qpmapper_dim=32,
        qpmapper_ffn=32,
        qpmapper_heads=4,
        number_of_epochs=2,
        feature_cache_dtype="float32",
    )
    results = {}
    for phase in PHASES:
        results[phase] = train(phase, overrides)
        assert results[phase].returncode == 0, results[phase].stdout[-3000:]
    return output, overrides, results
