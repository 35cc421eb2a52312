#!/usr/bin/env python3
"""Writes SpeechBrain manifests for RAVDESS speech (speaker-independent).

Reads the release layout ``Actor_XX/03-01-EE-II-SS-RR-AA.wav`` (the
official 48 kHz download and resampled copies alike) and writes
``train.json``, ``valid.json`` and ``test.json``, each mapping an utterance
id to ``{"wav", "duration", "wrd", "emo", "spk_id", "intensity"}``: the same
fields as the MSP-Podcast manifests plus the intensity (normal / strong).
``wrd`` is the statement, one of two fixed sentences, so the words carry no
emotion. Splits are by actor: the valid and test actors are given, every
other actor trains. Manifests are written to temporary files and renamed
into place; a re-run with the same options and the same audio listing
does nothing.

    python ravdess_prepare.py --data_folder D --save_folder S \
        --valid_actors 17,18 --test_actors 19,20,21,22,23,24

Authors
 * speechbrain-emosllm contributors 2026
"""

import argparse
import json
import logging
import os
import re
from collections import Counter

from speechbrain_emosllm.audio import check_audio
from speechbrain_emosllm.folds import parse_actors
from speechbrain_emosllm.labels import (
    RAVDESS_EMOTIONS,
    RAVDESS_LABEL_SETS,
    ravdess_labels,
)
from speechbrain_emosllm.manifests import (
    listing_digest,
    manifests_valid,
    options_match,
    write_json_atomically,
)

logger = logging.getLogger(__name__)

STATEMENTS = {
    "01": "Kids are talking by the door",
    "02": "Dogs are sitting by the door",
}
INTENSITIES = {"01": "normal", "02": "strong"}

SPLIT_FILES = {
    "train": "train.json",
    "valid": "valid.json",
    "test": "test.json",
}
OPTIONS_FILE = "prepare_options.json"
FILE_NAME = re.compile(
    r"^03-01-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.wav$", re.IGNORECASE
)
DEFAULT_VALID_ACTORS = (17, 18)
DEFAULT_TEST_ACTORS = (19, 20, 21, 22, 23, 24)


def parse_file_name(name):
    """Fields of a RAVDESS speech file name, or None if it is not one.

    Arguments
    ---------
    name : str
        Base name such as ``03-01-05-02-01-01-12.wav``.

    Returns
    -------
    dict or None
        ``emotion``, ``intensity``, ``statement`` (text) and ``actor`` (int).

    Example
    -------
    >>> parse_file_name("03-01-05-02-01-01-12.wav")["emotion"]
    'angry'
    >>> parse_file_name("02-01-05-02-01-01-12.wav") is None  # video
    True
    """
    found = FILE_NAME.match(name)
    if found is None:
        return None
    emotion, intensity, statement, repetition, actor = found.groups()
    if (
        emotion not in RAVDESS_EMOTIONS
        or intensity not in INTENSITIES
        or statement not in STATEMENTS
    ):
        return None
    return {
        "emotion": RAVDESS_EMOTIONS[emotion],
        "intensity": INTENSITIES[intensity],
        "statement": STATEMENTS[statement],
        "repetition": int(repetition),
        "actor": int(actor),
    }


def list_clips(data_folder):
    """Every speech clip under ``Actor_XX/`` folders, checked.

    A file whose name is not a RAVDESS speech name is skipped with a
    warning; one whose actor field differs from its folder is an error.

    Arguments
    ---------
    data_folder : str
        Folder holding ``Actor_01/`` ... ``Actor_24/``.

    Returns
    -------
    list of (str, dict)
        Path and parsed fields, sorted by path.
    """
    folders = sorted(
        d
        for d in os.listdir(data_folder)
        if re.fullmatch(r"Actor_\d\d", d)
        and os.path.isdir(os.path.join(data_folder, d))
    )
    if not folders:
        raise FileNotFoundError(
            f"No Actor_XX/ folders in {data_folder}: is it the RAVDESS "
            "speech release (Audio_Speech_Actors_01-24)?"
        )
    clips = []
    for folder in folders:
        for name in sorted(os.listdir(os.path.join(data_folder, folder))):
            path = os.path.join(data_folder, folder, name)
            fields = parse_file_name(name)
            if fields is None:
                logger.warning("Skipping %s: not a RAVDESS speech file", path)
                continue
            if fields["actor"] != int(folder[-2:]):
                raise ValueError(
                    f"{path}: actor {fields['actor']:02d} in the file name "
                    f"but the folder is {folder}."
                )
            clips.append((path, fields))
    return clips


def assign_splits(actors_present, valid_actors, test_actors):
    """Actor -> split; every other present actor trains.

    Arguments
    ---------
    actors_present : set of int
        Actors that have clips.
    valid_actors, test_actors : list of int
        Held-out actors.

    Returns
    -------
    dict
        Actor -> ``train``, ``valid`` or ``test``.

    Example
    -------
    >>> assign_splits({1, 2, 3}, [2], [3])
    {1: 'train', 2: 'valid', 3: 'test'}
    """
    both = sorted(set(valid_actors) & set(test_actors))
    if both:
        raise ValueError(
            f"Actors {both} are in both valid_actors and test_actors."
        )
    for split, actors in (("valid", valid_actors), ("test", test_actors)):
        if not actors:
            raise ValueError(
                f"{split}_actors is empty: name at least one actor."
            )
        absent = sorted(set(actors) - set(actors_present))
        if absent:
            raise ValueError(
                f"{split}_actors {absent} have no clips here (actors "
                f"present: {sorted(actors_present)}); pass --{split}_actors."
            )
    splits = {a: "train" for a in actors_present}
    splits.update({a: "valid" for a in valid_actors})
    splits.update({a: "test" for a in test_actors})
    if "train" not in splits.values():
        raise ValueError("No actor is left for training.")
    return dict(sorted(splits.items()))


def duration_of(path):
    """Duration of a clip, or an error naming the file and the problem."""
    duration, problem = check_audio(path)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    return duration


def prepare_ravdess(
    data_folder,
    save_folder,
    valid_actors=DEFAULT_VALID_ACTORS,
    test_actors=DEFAULT_TEST_ACTORS,
    label_set="ravdess8",
):
    """Writes train/valid/test manifests of RAVDESS speech, split by actor.

    Arguments
    ---------
    data_folder : str
        Folder holding ``Actor_XX/`` (the official release or a copy).
    save_folder : str
        Where the JSON manifests go.
    valid_actors, test_actors : list of int or str
        Held-out actors (e.g. ``"17,18"``); all other actors train.
    label_set : str
        ``ravdess8`` (8 native classes), ``msp`` (MSP-Podcast names: calm
        -> Neutral) or ``nhsa4`` (neutral, happy, sad, angry only).

    Returns
    -------
    dict
        Split -> number of clips written (empty when up to date).
    """
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(f"data_folder not found: {data_folder}")
    # Manifests hold absolute paths: they resolve from any directory.
    data_folder = os.path.abspath(data_folder)
    ravdess_labels(label_set)  # a clear error for an unknown set
    mapping = RAVDESS_LABEL_SETS[label_set]
    valid_actors, test_actors = (
        parse_actors(valid_actors),
        parse_actors(test_actors),
    )
    clips = list_clips(data_folder)
    splits = assign_splits(
        {fields["actor"] for _, fields in clips}, valid_actors, test_actors
    )
    options = {
        "data_folder": os.path.abspath(data_folder),
        "valid_actors": sorted(valid_actors),
        "test_actors": sorted(test_actors),
        "label_set": label_set,
        "listing": listing_digest(path for path, _ in clips),
    }
    outputs = {s: os.path.join(save_folder, f) for s, f in SPLIT_FILES.items()}
    options_path = os.path.join(save_folder, OPTIONS_FILE)
    if manifests_valid(outputs.values()) and options_match(
        options_path, options
    ):
        logger.info("Manifests in %s are up to date.", save_folder)
        return {}

    manifests = {split: {} for split in SPLIT_FILES}
    left_out = Counter()
    for path, fields in clips:
        emotion = mapping.get(fields["emotion"])
        if emotion is None:
            left_out[fields["emotion"]] += 1
            continue
        utt_id = os.path.splitext(os.path.basename(path))[0]
        manifests[splits[fields["actor"]]][utt_id] = {
            "wav": path,
            "duration": round(duration_of(path), 3),
            "wrd": fields["statement"],
            "emo": emotion,
            "spk_id": f"{fields['actor']:02d}",
            "intensity": fields["intensity"],
        }
    for split, items in manifests.items():
        if not items:
            raise ValueError(
                f"Split {split} has no clips with label_set {label_set}."
            )
    os.makedirs(save_folder, exist_ok=True)
    if os.path.isfile(options_path):
        os.remove(options_path)  # stale until every manifest is rewritten
    for split, path in outputs.items():
        write_json_atomically(path, manifests[split])
        logger.info("%s: %d clips -> %s", split, len(manifests[split]), path)
    for emotion, count in sorted(left_out.items()):
        logger.info("Left out %d %s clips (%s)", count, emotion, label_set)
    write_json_atomically(options_path, options)
    return {split: len(items) for split, items in manifests.items()}


def main(argv=None):
    """Command line (see the module docstring).

    Arguments
    ---------
    argv : list of str, optional
        Arguments (``sys.argv[1:]`` when None).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    parser.add_argument(
        "--valid_actors", default=",".join(map(str, DEFAULT_VALID_ACTORS))
    )
    parser.add_argument(
        "--test_actors", default=",".join(map(str, DEFAULT_TEST_ACTORS))
    )
    parser.add_argument(
        "--label_set", default="ravdess8", choices=RAVDESS_LABEL_SETS
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    counts = prepare_ravdess(
        args.data_folder,
        args.save_folder,
        args.valid_actors,
        args.test_actors,
        args.label_set,
    )
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
