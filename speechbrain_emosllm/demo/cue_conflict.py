"""The cue-conflict test of the eSpeak demo: voice or words.

A speech LLM may answer from what is said rather than how. On the demo's
held-out voices this test synthesises, for every pair of classes A != B,
``PER_PAIR`` clips whose sentence carries A's emotion words, spoken with
B's prosody, and counts for each mode the answers that follow the voice
(B), the words (A) or neither. ``transcript_swap`` gives the transcript
modes the held-out test clips with another class's emotion sentence as
the transcript. ``voice_only`` scores the held-out test clips without
emotion words, next to linear probes of the same frozen frames (L2 and
layers chosen on the valid clips). ``python -m speechbrain_emosllm.demo
--cue_conflict --output D`` runs it on the finished demo in ``D`` and
writes ``D/cue_conflict.json``.

Authors
 * speechbrain-emosllm contributors 2026
"""

import json
import multiprocessing
import os
import random
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor

import torch

from speechbrain_emosllm.demo.corpus import (
    LABELS,
    TEST_VOICES,
    jittered_prosody,
    make_sentence,
    write_clip,
)
from speechbrain_emosllm.metrics import EmotionMetrics
from speechbrain_emosllm.modes import EMOTION_MODES

PER_PAIR = 4
SWAP_MODES = ("joint_oracle", "prompt_hint")
RESULTS = "cue_conflict.json"


def conflict_items(seed=0):
    """The clips to synthesise: words of one class, voice of another.

    Each pair of classes gets ``PER_PAIR`` clips, alternating the held-out
    voices.

    Arguments
    ---------
    seed : int
        Seed of the sentences and the prosody jitter.

    Returns
    -------
    list of dict
        ``id``, ``text``, ``words`` (A), ``voice_class`` (B), ``voice``,
        ``seed`` and ``prosody``.

    Example
    -------
    >>> items = conflict_items()
    >>> len(items), items[0]["words"], items[0]["voice_class"]
    (48, 'Neutral', 'Happy')
    >>> all(i["words"] != i["voice_class"] for i in items)
    True
    """
    rng = random.Random(seed)
    items = []
    pairs = [(a, b) for a in LABELS for b in LABELS if a != b]
    for words, voice_class in pairs:
        for k in range(PER_PAIR):
            items.append(
                {
                    "id": f"conflict_{len(items):04d}",
                    "text": make_sentence(words, True, rng),
                    "words": words,
                    "voice_class": voice_class,
                    "voice": TEST_VOICES[k % len(TEST_VOICES)],
                    "seed": 7_000_003 + len(items),
                    "prosody": jittered_prosody(voice_class, rng),
                }
            )
    return items


def synthesize_items(folder, items, sample_rate):
    """Writes each item's clip as ``<folder>/<id>.wav`` (this process)."""
    from speechbrain_emosllm.demo.espeak import ESpeak

    speaker = ESpeak()
    os.makedirs(folder, exist_ok=True)
    for item in items:
        path = os.path.join(folder, f"{item['id']}.wav")
        write_clip(
            speaker,
            path,
            item["text"],
            item["voice"],
            item["seed"],
            item["prosody"],
            sample_rate,
        )
        item["wav"] = path
    return items


def synthesize_conflicts(folder, sample_rate=16000, seed=0):
    """Synthesises ``conflict_items`` in a fresh process.

    eSpeak NG keeps state across clips (see ``corpus.synthesize_corpus``).
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(
            synthesize_items, folder, conflict_items(seed), sample_rate
        ).result()


def follow_shares(answers, voice, words):
    """Shares of the answers that are the voice's or the words' class.

    Example
    -------
    >>> follow_shares(["A", "B", "C", "A"], ["A"] * 4, ["B"] * 4)
    {'follows_voice': 0.5, 'follows_words': 0.25, 'neither': 0.25}
    """
    n = len(answers)
    by_voice = sum(a == v for a, v in zip(answers, voice))
    by_words = sum(a == w and a != v for a, v, w in zip(answers, voice, words))
    return {
        "follows_voice": round(by_voice / n, 4),
        "follows_words": round(by_words / n, 4),
        "neither": round((n - by_voice - by_words) / n, 4),
    }


def swapped_transcripts(labels, seed=1):
    """For each clip's class, an emotion sentence of another class.

    The other class is the next one in ``LABELS`` order, shifted once more
    every clip, so every other class is used.

    Example
    -------
    >>> texts, classes = swapped_transcripts(["Sad", "Sad", "Sad"])
    >>> classes
    ['Angry', 'Neutral', 'Happy']
    """
    rng = random.Random(seed)
    texts, classes = [], []
    for index, label in enumerate(labels):
        shift = 1 + index % (len(LABELS) - 1)
        other = LABELS[(LABELS.index(label) + shift) % len(LABELS)]
        texts.append(make_sentence(other, True, rng))
        classes.append(other)
    return texts, classes


BATCH_SIZE = 8


def load_batches(model, paths):
    """The files as padded (wavs, relative lengths) batches, read once."""
    from speechbrain.dataio.batch import PaddedBatch

    batches = []
    for start in range(0, len(paths), BATCH_SIZE):
        chunk = paths[start : start + BATCH_SIZE]
        batch = PaddedBatch([{"sig": model.load_audio(p)} for p in chunk])
        batches.append(batch.sig)
    return batches


def answer(model, batches, mode, transcripts=None):
    """The model's label for each clip of ``load_batches``' batches."""
    labels = []
    for index, (wavs, lengths) in enumerate(batches):
        given = None
        if transcripts is not None:
            start = index * BATCH_SIZE
            given = transcripts[start : start + len(wavs)]
        results = model.predict_batch(wavs, lengths, mode, given)
        labels += [r["label"] for r in results]
    return labels


@torch.no_grad()
def pooled(model, batches):
    """Probe inputs (``linear_probe.pool_frames``) of each clip.

    The model's frozen frames, over each clip's valid frames.
    """
    from speechbrain_emosllm.linear_probe import pool_frames

    out = []
    for wavs, lengths in batches:
        frames = model.mods.encoder(wavs.to(model.device), lengths).float()
        valid = torch.round(lengths * frames.shape[1]).clamp(min=1).long()
        out += [pool_frames(f[:n].cpu()) for f, n in zip(frames, valid)]
    return torch.stack(out)


def macro_f1(ids, predictions, targets):
    """Macro-F1 over ``LABELS``."""
    metrics = EmotionMetrics(LABELS)
    metrics.append(ids, predictions, targets)
    return round(metrics.summarize()["macro_f1"], 4)


def voice_only(model, corpus):
    """``ser_only`` and probes on the held-out clips without emotion words.

    Arguments
    ---------
    model : EmotionLLM
        The demo's exported phase 3.
    corpus : str
        The demo's corpus folder (``train``, ``valid``, ``test.json``).

    Returns
    -------
    dict
        Row -> ``{"macro_f1": f}`` (probes also ``l2``), and ``n``.
    """
    from speechbrain_emosllm.linear_probe import PENALTIES, select_and_test

    splits, test_batches = {}, None
    for split in ("train", "valid", "test"):
        manifest = json.load(open(os.path.join(corpus, f"{split}.json")))
        if split == "test":
            manifest = {
                u: e for u, e in manifest.items() if not e["emotion_words"]
            }
        ids = list(manifest)
        y = torch.tensor([LABELS.index(manifest[u]["emo"]) for u in ids])
        batches = load_batches(model, [manifest[u]["wav"] for u in ids])
        splits[split] = (pooled(model, batches), y, ids)
        test_batches = batches
    ids = splits["test"][2]
    targets = [LABELS[i] for i in splits["test"][1]]
    said = answer(model, test_batches, "ser_only")
    rows = {
        "n": len(ids),
        "ser_only": {"macro_f1": macro_f1(ids, said, targets)},
    }
    probes = {"linear_probe": False}
    if splits["train"][0].shape[1] > 1:
        probes["weighted_layers_probe"] = True
    for name, weighted in probes.items():
        result = select_and_test(splits, LABELS, weighted, PENALTIES)
        rows[name] = {
            "macro_f1": round(result["macro_f1"], 4),
            "l2": result["l2"],
        }
    return rows


def cue_conflict(model, corpus, folder):
    """The report that ``run_cue_conflict`` writes.

    Arguments
    ---------
    model : EmotionLLM
        The demo's exported phase 3.
    corpus : str
        The demo's corpus folder.
    folder : str
        Where the conflicting clips are written.

    Returns
    -------
    dict
    """
    items = synthesize_conflicts(os.path.join(folder, "audio"))
    clips = load_batches(model, [item["wav"] for item in items])
    texts = [item["text"] for item in items]
    voice = [item["voice_class"] for item in items]
    words = [item["words"] for item in items]
    modes = {}
    for mode in EMOTION_MODES:
        given = texts if mode in SWAP_MODES else None
        modes[mode] = follow_shares(
            answer(model, clips, mode, given), voice, words
        )
    test = json.load(open(os.path.join(corpus, "test.json")))
    targets = [entry["emo"] for entry in test.values()]
    swapped, classes = swapped_transcripts(targets)
    files = load_batches(model, [entry["wav"] for entry in test.values()])
    swap = {
        mode: follow_shares(
            answer(model, files, mode, swapped), targets, classes
        )
        for mode in SWAP_MODES
    }
    with open(os.path.join(folder, "clips.json"), "w", encoding="utf-8") as f:
        json.dump(items, f, indent=1)
    return {
        "n": len(items),
        "per_pair": PER_PAIR,
        "modes": modes,
        "transcript_swap": {"n": len(targets), **swap},
        "voice_only": voice_only(model, corpus),
    }


def run_cue_conflict(output):
    """Runs the test on the finished demo in ``output``; writes the JSON.

    Arguments
    ---------
    output : str
        A demo output folder whose ``p3_joint`` finished.

    Returns
    -------
    dict
        The report (also in ``<output>/cue_conflict.json``).
    """
    from speechbrain_emosllm.export import export_model
    from speechbrain_emosllm.inference import EmotionLLM

    phase = os.path.join(output, "p3_joint")
    if not os.path.isfile(os.path.join(phase, "demo_phase_done")):
        raise FileNotFoundError(
            f"{phase} has not finished: run the demo with --output {output} "
            "first"
        )
    scratch = tempfile.mkdtemp(prefix="cue_conflict-")
    try:
        model_folder = export_model(
            phase, os.path.join(scratch, "model"), absolute_base_paths=True
        )
        model = EmotionLLM.from_hparams(
            source=model_folder, savedir=os.path.join(scratch, "savedir")
        )
        report = cue_conflict(
            model,
            os.path.join(output, "corpus"),
            os.path.join(output, "cue_conflict"),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    with open(os.path.join(output, RESULTS), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return report


def print_cue_conflict(report):
    """The shares of every mode, the swap and the voice-only scores."""
    print(f"\ncue conflict: {report['n']} clips (words of A, voice of B)")
    print(f"{'mode':<22}{'voice':>8}{'words':>8}{'neither':>9}")
    rows = [*report["modes"].items()]
    rows += [(f"{m} (swap)", report["transcript_swap"][m]) for m in SWAP_MODES]
    for name, row in rows:
        print(
            f"{name:<22}{row['follows_voice']:>8.3f}"
            f"{row['follows_words']:>8.3f}{row['neither']:>9.3f}"
        )
    voice = report["voice_only"]
    print(
        f"voice only ({voice['n']} clips, no emotion words), macro-F1: "
        + ", ".join(
            f"{k} {v['macro_f1']:.3f}" for k, v in voice.items() if k != "n"
        )
    )
