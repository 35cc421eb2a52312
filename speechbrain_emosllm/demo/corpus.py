"""A small emotional speech corpus synthesised with eSpeak NG.

Four classes (Neutral, Happy, Sad, Angry) are expressed by prosody (rate,
pitch, pitch range and volume, jittered per utterance) for every sentence,
and by emotion-bearing words for only part of them, so that a model must
listen to *how* things are said, not only to *what* is said. Speakers are
eSpeak voice variants; the test split uses voices never heard in training.
The manifests have the same fields as the MSP-Podcast ones, plus
``emotion_words`` (whether the sentence carries an emotion word).

Authors
 * speechbrain-emosllm contributors 2026
"""

import json
import multiprocessing
import os
import random
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from speechbrain_emosllm.manifests import file_digest

LABELS = ["Neutral", "Happy", "Sad", "Angry"]
NOUNS = ["cat", "dog", "car", "book", "house", "ball", "tree", "box"]
PLACES = ["near the door", "on the table", "in the garden", "by the window"]
PLAIN_TEMPLATES = [
    "the {noun} is {place}",
    "i see the {noun}",
    "we have a {noun}",
    "where is the {noun}",
]
# Emotion-bearing sentences, per class.
EMOTION_TEMPLATES = {
    "Neutral": ["the {noun} is fine", "it is a normal {noun}"],
    "Happy": ["i love the {noun}", "what a wonderful {noun}"],
    "Sad": ["i miss the {noun}", "the {noun} is gone forever"],
    "Angry": ["i hate the {noun}", "this stupid {noun} again"],
}
# eSpeak prosody per class: words per minute, pitch, pitch range, volume.
PROSODY = {
    "Neutral": {"rate": 165, "pitch": 50, "pitch_range": 40, "volume": 100},
    "Happy": {"rate": 195, "pitch": 78, "pitch_range": 95, "volume": 130},
    "Sad": {"rate": 115, "pitch": 25, "pitch_range": 8, "volume": 60},
    "Angry": {"rate": 210, "pitch": 42, "pitch_range": 70, "volume": 190},
}
TRAIN_VOICES = [
    "en-us+m1",
    "en-us+m2",
    "en-us+m4",
    "en-us+m5",
    "en-us+f1",
    "en-us+f3",
    "en-us+f4",
    "en-us+f5",
]
TEST_VOICES = ["en-us+m3", "en-us+f2"]


def make_sentence(label, with_emotion_words, rng):
    """A sentence for a class, with or without emotion words.

    Arguments
    ---------
    label : str
        One of ``LABELS``.
    with_emotion_words : bool
        Whether to use an emotion-bearing template of the class.
    rng : random.Random
        Source of randomness.

    Returns
    -------
    str

    Example
    -------
    >>> make_sentence("Sad", True, random.Random(0))
    'the tree is gone forever'
    """
    templates = (
        EMOTION_TEMPLATES[label] if with_emotion_words else PLAIN_TEMPLATES
    )
    return rng.choice(templates).format(
        noun=rng.choice(NOUNS), place=rng.choice(PLACES)
    )


def jittered_prosody(label, rng, jitter=0.08):
    """Class prosody with multiplicative per-utterance jitter.

    Arguments
    ---------
    label : str
        One of ``LABELS``.
    rng : random.Random
        Source of randomness.
    jitter : float
        Relative standard deviation of the jitter.

    Returns
    -------
    dict
        eSpeak parameters.

    Example
    -------
    >>> jittered_prosody("Sad", random.Random(0), jitter=0.0)["rate"]
    115
    """
    return {
        key: int(round(value * (1 + rng.gauss(0, jitter))))
        for key, value in PROSODY[label].items()
    }


def synthesize_corpus(
    folder,
    n_train=640,
    n_valid=64,
    n_test=160,
    emotion_word_share=0.5,
    seed=1234,
    sample_rate=16000,
):
    """Writes the corpus audio and ``train/valid/test.json`` manifests.

    Train and valid use ``TRAIN_VOICES``; test uses the held-out
    ``TEST_VOICES``. Classes are balanced. Existing manifests written with
    the same options are kept (nothing is synthesised again).

    Arguments
    ---------
    folder : str
        Output folder.
    n_train, n_valid, n_test : int
        Number of clips per split.
    emotion_word_share : float
        Share of sentences with emotion words.
    seed : int
        Seed: texts, labels, speakers, prosody and the waveforms (eSpeak
        NG's own noise generator is seeded per clip) are a deterministic
        function of the options; ``corpus_options.json`` also records each
        file's SHA-256.
    sample_rate : int
        Sampling rate of the written files.

    Returns
    -------
    dict
        Split -> manifest.
    """
    options = dict(
        n_train=n_train,
        n_valid=n_valid,
        n_test=n_test,
        emotion_word_share=emotion_word_share,
        seed=seed,
        sample_rate=sample_rate,
        version=2,  # 1: eSpeak NG's noise was seeded from the clock
    )
    options_path = os.path.join(folder, "corpus_options.json")
    splits = {
        "train": (n_train, TRAIN_VOICES),
        "valid": (n_valid, TRAIN_VOICES),
        "test": (n_test, TEST_VOICES),
    }
    if os.path.isfile(options_path):
        with open(options_path, encoding="utf-8") as f:
            if json.load(f).get("options") == options:
                return {
                    s: json.load(open(os.path.join(folder, f"{s}.json")))
                    for s in splits
                }
    # eSpeak NG keeps state from clip to clip that seeding does not reset:
    # a fresh process per corpus makes the same options give the same bytes.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        manifests, checksums = pool.submit(
            synthesize_splits, folder, splits, options
        ).result()
    with open(options_path, "w", encoding="utf-8") as f:
        json.dump({"options": options, "sha256": checksums}, f, indent=1)
    return manifests


def synthesize_splits(folder, splits, options):
    """Synthesises every clip in this process; manifests and checksums.

    Arguments
    ---------
    folder : str
        Output folder.
    splits : dict
        Split -> (number of clips, voices).
    options : dict
        ``synthesize_corpus``'s options.

    Returns
    -------
    (dict, dict)
        Split -> manifest, and utterance id -> SHA-256 of its file.
    """
    from speechbrain_emosllm.demo.espeak import ESpeak

    seed, sample_rate = options["seed"], options["sample_rate"]
    emotion_word_share = options["emotion_word_share"]
    speaker = ESpeak()
    audio_folder = os.path.join(folder, "audio")
    os.makedirs(audio_folder, exist_ok=True)
    rng = random.Random(seed)
    manifests, checksums = {}, {}
    for split_index, (split, (count, voices)) in enumerate(splits.items()):
        manifest = {}
        for index in range(count):
            label = LABELS[index % len(LABELS)]
            voice = voices[(index // len(LABELS)) % len(voices)]
            with_words = rng.random() < emotion_word_share
            text = make_sentence(label, with_words, rng)
            utt_id = f"{split}_{index:04d}"
            path = os.path.join(audio_folder, f"{utt_id}.wav")
            audio = write_clip(
                speaker,
                path,
                text,
                voice,
                seed * 100_003 + split_index * 10_007 + index,
                jittered_prosody(label, rng),
                sample_rate,
            )
            checksums[utt_id] = file_digest(path)
            manifest[utt_id] = {
                "wav": path,
                "duration": round(len(audio) / sample_rate, 3),
                "wrd": text,
                "emo": label,
                "spk_id": voice,
                "emotion_words": with_words,
            }
        manifests[split] = manifest
        with open(
            os.path.join(folder, f"{split}.json"), "w", encoding="utf-8"
        ) as f:
            json.dump(manifest, f, indent=1)
    return manifests, checksums


def write_clip(speaker, path, text, voice, seed, prosody, sample_rate):
    """Synthesises one clip, resampled and kept in range, to ``path``.

    Arguments
    ---------
    speaker : ESpeak
        The synthesiser.
    path : str
        WAV file to write.
    text : str
        The sentence.
    voice : str
        eSpeak voice variant.
    seed : int
        eSpeak NG's noise seed.
    prosody : dict
        eSpeak parameters (``jittered_prosody``).
    sample_rate : int
        Sampling rate of the file.

    Returns
    -------
    numpy.ndarray
        The samples written.
    """
    import soundfile
    import torch
    import torchaudio

    audio = speaker.synthesize(text, voice=voice, seed=seed, **prosody)
    audio = torchaudio.functional.resample(
        torch.from_numpy(audio), speaker.sample_rate, sample_rate
    ).numpy()
    peak = np.abs(audio).max()
    if peak > 0.99:  # loud voices may clip: keep them in range
        audio = audio * (0.99 / peak)
    soundfile.write(path, audio, sample_rate)
    return audio
