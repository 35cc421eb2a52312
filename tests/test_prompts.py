"""Prompt bank, answer format, parsing and token spans."""

import random

import pytest

from speechbrain_emosllm.modes import MODES
from speechbrain_emosllm.prompts import (
    EMOTION,
    IGNORE,
    PROMPTS,
    TRANSCRIPT,
    PromptBuilder,
    format_answer,
    parse_answer,
)
from speechbrain_emosllm.testing import make_tiny_tokenizer

LABELS = ["Neutral", "Happy", "Sad", "Angry", "Contempt"]


@pytest.fixture(scope="module")
def builder():
    return PromptBuilder(make_tiny_tokenizer(), LABELS, n_queries=4)


@pytest.mark.parametrize("task", ["asr", "ser", "joint"])
def test_at_least_twenty_distinct_paraphrases(task):
    assert len(set(PROMPTS[task])) >= 20


def test_emotion_tasks_list_the_emotions():
    for prompt in PROMPTS["ser"] + PROMPTS["joint"]:
        assert "{emotions}" in prompt


def test_joint_answer_format():
    text = "".join(t for t, _ in format_answer("joint", " hi you ", "Sad"))
    assert text == "| ASR: hi you | Emotion: Sad"


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("| ASR: hello world | Emotion: Happy", ("hello world", "Happy")),
        ("| ASR: hello | Emotion: ANGRY<|im_end|>", ("hello", "Angry")),
        ("| Emotion: sad", (None, "Sad")),
        ("| Emotion: bored", (None, None)),
        ("I think the speaker is happy", (None, None)),
        ("| ASR: no emotion here", ("no emotion here", None)),
    ],
)
def test_parse_answer(answer, expected):
    assert parse_answer(answer, LABELS) == expected


def test_label_order_is_shuffled_in_training_and_fixed_in_eval(builder):
    rng = random.Random(0)
    orders = {builder.emotion_list(rng) for _ in range(20)}
    assert len(orders) > 5
    assert builder.emotion_list() == ", ".join(LABELS)
    eval_prompts = {builder.user_prompt("ser") for _ in range(5)}
    assert len(eval_prompts) == 1


def test_spans_cover_exactly_the_transcript_and_the_label(builder):
    example = builder.training_example(
        "joint", "the cat sat", "Contempt", random.Random(1)
    )
    ids, spans = example["input_ids"], example["span_ids"]
    transcript = [t for t, s in zip(ids, spans) if s == TRANSCRIPT]
    emotion = [t for t, s in zip(ids, spans) if s == EMOTION]
    assert builder.decode(transcript) == " the cat sat"
    assert builder.decode(emotion) == " Contempt"
    first_answer = spans.index(next(s for s in spans if s != IGNORE))
    assert all(s == IGNORE for s in spans[:first_answer])
    assert ids[-len(builder.end_of_turn_ids) :] == builder.end_of_turn_ids


def test_audio_slots_follow_the_cue(builder):
    example = builder.training_example("asr", "yes", "Sad", random.Random(0))
    start = example["audio_start"]
    before = builder.decode(example["input_ids"][:start])
    assert before.endswith("Here are some audio tokens:")
    slots = example["input_ids"][start : start + builder.n_queries]
    assert slots == [builder.placeholder_id] * builder.n_queries


def test_inference_prefix_matches_training_tokens(builder):
    """The joint_oracle prefix + a label is token for token a training
    example (with the eval prompt), so scoring sees what training taught."""
    prefix = builder.inference_prefix("joint_oracle", "the cat sat")
    label_ids = builder.label_ids[LABELS.index("Sad")]
    training = builder.training_example("joint", "the cat sat", "Sad", None)
    assert prefix["input_ids"] + label_ids == training["input_ids"]


def test_prompt_hint_puts_the_transcript_in_the_user_turn(builder):
    prefix = builder.decode(
        builder.inference_prefix("prompt_hint", "hello there")["input_ids"]
    )
    user_turn = prefix.split("assistant")[0]
    assert '"hello there"' in user_turn
    assert prefix.endswith("| Emotion:")


def test_every_mode_builds_and_unknown_mode_is_rejected(builder):
    for mode in MODES:
        builder.inference_prefix(mode, "a b")
    with pytest.raises(ValueError, match="Unknown mode 'chat'"):
        builder.inference_prefix("chat")
    with pytest.raises(ValueError, match="needs a transcript"):
        builder.inference_prefix("joint_oracle")
