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
A file listed twice (in one split or two), a FileName that leaves
``Audios/``, a byte that is not UTF-8 or a short row is an error naming the
line; an empty Train, Development or Test1 is an error, an empty Test2 is
left out. Manifests are written atomically, and a re-run skips the work
only if the options and the label table's content are unchanged and every
manifest still parses.

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
from speechbrain_emosllm.manifests import (
    file_digest,
    folder_listing,
    listing_digest,
    manifests_valid,
    write_json_atomically,
)

logger = logging.getLogger(__name__)

SPLIT_FILES = {
    "Train": "train.json",
    "Development": "valid.json",
    "Test1": "test.json",
    "Test2": "test2.json",
}
OPTIONS_FILE = "prepare_options.json"
# A release without Test2 labels is fine; the other splits are required.
OPTIONAL_SPLITS = ("Test2",)
REQUIRED_COLUMNS = {"FileName", "EmoClass", "SpkrID", "Split_Set"}


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


def read_label_rows(labels_csv):
    """The label table's rows, each with its line number, checked.

    Read as UTF-8 with an optional byte-order mark. A byte that is not
    UTF-8, a row with fewer fields than the header, or missing columns are
    errors that name the file and the line.

    Arguments
    ---------
    labels_csv : str
        ``Labels/labels_consensus.csv``.

    Returns
    -------
    list of (int, dict)
    """
    with open(labels_csv, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ValueError(
            f"{labels_csv}, line {line}: not UTF-8 text ({error.reason}); "
            "save the table as UTF-8."
        ) from None
    reader = csv.DictReader(text.splitlines())
    missing = REQUIRED_COLUMNS - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"{labels_csv} lacks columns {sorted(missing)}.")
    rows = []
    for row in reader:
        line = reader.line_num
        if None in row.values() or None in row:
            # csv fills missing fields with None and files extra ones
            # under the key None.
            fields = sum(v is not None for k, v in row.items() if k)
            fields += len(row.get(None, []))
            raise ValueError(
                f"{labels_csv}, line {line}: {fields} fields where the "
                f"header has {len(reader.fieldnames)}."
            )
        rows.append((line, row))
    return rows


def audio_path(data_folder, file_name, labels_csv, line):
    """``Audios/<FileName>``, refusing names that leave ``Audios/``."""
    audios = os.path.realpath(os.path.join(data_folder, "Audios"))
    path = os.path.realpath(os.path.join(audios, file_name))
    if os.path.isabs(file_name) or os.path.dirname(path) != audios:
        raise ValueError(
            f"{labels_csv}, line {line}: FileName '{file_name}' is not a "
            "file name inside Audios/."
        )
    return os.path.join(data_folder, "Audios", file_name)


def collect_rows(data_folder, labels_csv, splits, classes):
    """Manifest entries per split, skipped-row counts (see the module)."""
    manifests = {split: {} for split in splits}
    skipped, first_seen = Counter(), {}
    for line, row in read_label_rows(labels_csv):
        file_name = row["FileName"].strip()
        utt_id = os.path.splitext(file_name)[0]
        split = row["Split_Set"].strip()
        if utt_id in first_seen:
            raise ValueError(
                f"{labels_csv}, line {line}: {file_name} is listed again "
                f"(first on line {first_seen[utt_id]}); each file must "
                "appear once, in one split."
            )
        first_seen[utt_id] = line
        if split not in manifests:
            continue
        emotion = EMOTION_CODES.get(row["EmoClass"].strip())
        if emotion not in classes:
            skipped["not a class of the protocol"] += 1
            continue
        wav = audio_path(data_folder, file_name, labels_csv, line)
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
    return manifests, skipped


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
        Train, Development and Test1 must not come out empty; an empty
        Test2 is left out with a warning.

    Returns
    -------
    dict
        Split -> number of utterances written (empty when the manifests
        were already there for the same options and label table).
    """
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(f"data_folder not found: {data_folder}")
    # Manifests hold absolute paths: they resolve from any directory.
    data_folder = os.path.abspath(data_folder)
    labels_csv = os.path.join(data_folder, "Labels", "labels_consensus.csv")
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
        "labels_csv_sha256": file_digest(labels_csv),
        # The audio and transcripts it read: a file restored, added or
        # replaced since the last run makes it prepare again.
        "files": listing_digest(
            folder_listing(os.path.join(data_folder, "Audios"))
            + folder_listing(os.path.join(data_folder, "Transcripts"))
        ),
    }
    options_path = os.path.join(save_folder, OPTIONS_FILE)
    previous, written = previous_run(options_path)
    if previous == options and manifests_valid(
        os.path.join(save_folder, SPLIT_FILES[s]) for s in written
    ):
        logger.info("Manifests in %s are up to date.", save_folder)
        return {}

    manifests, skipped = collect_rows(data_folder, labels_csv, splits, classes)
    for split, items in manifests.items():
        if not items and split not in OPTIONAL_SPLITS:
            raise ValueError(
                f"Split {split} has no usable rows in {labels_csv} for the "
                f"{n_classes}-class protocol (see the skipped rows above)."
            )
    os.makedirs(save_folder, exist_ok=True)
    if os.path.isfile(options_path):
        os.remove(options_path)  # stale until every manifest is rewritten
    written = []
    for split, items in manifests.items():
        path = os.path.join(save_folder, SPLIT_FILES[split])
        if not items:
            logger.warning(
                "%s has no usable rows: %s not written.", split, path
            )
            if os.path.isfile(path):
                os.remove(path)
            continue
        write_json_atomically(path, items)
        written.append(split)
        logger.info("%s: %d utterances -> %s", split, len(items), path)
    for reason, count in sorted(skipped.items()):
        logger.warning("Skipped %d rows: %s", count, reason)
    write_json_atomically(options_path, {**options, "written": written})
    return {split: len(manifests[split]) for split in written}


def previous_run(options_path):
    """Options and written splits of the run that wrote ``options_path``."""
    try:
        with open(options_path, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return None, []
    written = stored.pop("written", [])
    return stored, written


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
