#!/usr/bin/env python3
"""Writes SpeechBrain manifests for MSP-Podcast (releases 1.11 / 1.12).

Reads ``Labels/labels_consensus.csv``, ``Audios/`` and ``Transcripts/`` of a
release and writes ``train.json`` (Train), ``valid.json`` (Development),
``test.json`` (Test1) and ``test2.json`` (Test2), each mapping an utterance
id to ``{"wav", "duration", "wrd", "emo", "spk_id"}``. Test3 has no public
labels and is skipped. The 8-class protocol (Odyssey 2024) drops the O
(other) and X (no agreement) rows; the 4-class protocol keeps Neutral, Happy,
Sad and Angry. Rows with missing, empty or unreadable audio, or without a
transcript, are skipped, each named in the log, with counts at the end.

    python msp_podcast_prepare.py --data_folder D --save_folder S

Authors
 * speechbrain-emosllm contributors 2026
"""

import argparse
import csv
import json
import logging
import os
from collections import Counter

from speechbrain_emosllm.audio import check_audio
from speechbrain_emosllm.labels import EMOTION_CODES, emotion_labels

logger = logging.getLogger(__name__)

SPLIT_FILES = {
    "Train": "train.json",
    "Development": "valid.json",
    "Test1": "test.json",
    "Test2": "test2.json",
}
OPTIONS_FILE = "prepare_options.json"


def read_transcript(path):
    """The one-line transcript of a segment, or None if absent or blank.

    Arguments
    ---------
    path : str
        Transcript file.

    Returns
    -------
    str or None
    """
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        text = " ".join(f.read().split())
    return text or None


def prepare_msp_podcast(
    data_folder, save_folder, n_classes=8, splits=tuple(SPLIT_FILES)
):
    """Writes the manifests of MSP-Podcast's labelled splits.

    Arguments
    ---------
    data_folder : str
        Root of the release (holding ``Audios/``, ``Labels/``,
        ``Transcripts/``).
    save_folder : str
        Where the JSON manifests go.
    n_classes : int
        8 (O and X dropped) or 4 (Neutral, Happy, Sad, Angry).
    splits : tuple of str
        ``Split_Set`` values to write (Train, Development, Test1, Test2).

    Returns
    -------
    dict
        Split -> number of utterances written (empty when the manifests
        were already there for the same options).
    """
    labels_csv = os.path.join(data_folder, "Labels", "labels_consensus.csv")
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(f"data_folder not found: {data_folder}")
    if not os.path.isfile(labels_csv):
        raise FileNotFoundError(
            f"{labels_csv} not found: is {data_folder} an MSP-Podcast "
            "release (with Labels/, Audios/ and Transcripts/)?"
        )
    classes = set(emotion_labels(n_classes))
    unknown = set(splits) - set(SPLIT_FILES)
    if unknown:
        raise ValueError(
            f"Unknown splits {sorted(unknown)}; use {', '.join(SPLIT_FILES)}."
        )
    options = {
        "data_folder": os.path.abspath(data_folder),
        "n_classes": n_classes,
        "splits": list(splits),
    }
    outputs = [os.path.join(save_folder, SPLIT_FILES[s]) for s in splits]
    options_path = os.path.join(save_folder, OPTIONS_FILE)
    if all(map(os.path.isfile, outputs)) and os.path.isfile(options_path):
        with open(options_path, encoding="utf-8") as f:
            if json.load(f) == options:
                logger.info("Manifests in %s are up to date.", save_folder)
                return {}

    manifests = {split: {} for split in splits}
    skipped = Counter()
    with open(labels_csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"FileName", "EmoClass", "SpkrID", "Split_Set"} - set(
            reader.fieldnames or []
        )
        if missing:
            raise ValueError(f"{labels_csv} lacks columns {sorted(missing)}.")
        for row in reader:
            split = row["Split_Set"].strip()
            if split not in manifests:
                continue
            emotion = EMOTION_CODES.get(row["EmoClass"].strip())
            if emotion not in classes:
                skipped["not a class of the protocol"] += 1
                continue
            file_name = row["FileName"].strip()
            utt_id = os.path.splitext(file_name)[0]
            wav = os.path.join(data_folder, "Audios", file_name)
            duration, problem = check_audio(wav)
            transcript = read_transcript(
                os.path.join(data_folder, "Transcripts", utt_id + ".txt")
            )
            if problem is None and transcript is None:
                problem = "missing or empty transcript"
            if problem is not None:
                logger.warning("Skipping %s: %s (%s)", utt_id, problem, wav)
                skipped[problem.split(" (")[0]] += 1
                continue
            manifests[split][utt_id] = {
                "wav": wav,
                "duration": round(duration, 3),
                "wrd": transcript,
                "emo": emotion,
                "spk_id": row["SpkrID"].strip(),
            }

    os.makedirs(save_folder, exist_ok=True)
    for split, path in zip(splits, outputs):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(manifests[split], f, indent=1)
        logger.info(
            "%s: %d utterances -> %s", split, len(manifests[split]), path
        )
    for reason, count in sorted(skipped.items()):
        logger.warning("Skipped %d rows: %s", count, reason)
    with open(options_path, "w", encoding="utf-8") as f:
        json.dump(options, f, indent=1)
    return {split: len(items) for split, items in manifests.items()}


def main(argv=None):
    """Command line: ``--data_folder D --save_folder S [--n_classes 4]``.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (``sys.argv[1:]`` when None).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    parser.add_argument("--n_classes", type=int, default=8, choices=(4, 8))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    prepare_msp_podcast(args.data_folder, args.save_folder, args.n_classes)


if __name__ == "__main__":
    main()
