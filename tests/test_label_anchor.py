"""The label anchor: class-name embeddings as the mapper's direct target."""

import random

import torch

from speechbrain_emosllm import QPMapper
from speechbrain_emosllm.label_anchor import LabelAnchor, label_embeddings
from speechbrain_emosllm.prompts import EMOTION, PromptBuilder
from speechbrain_emosllm.testing import make_tiny_tokenizer
from speechbrain_emosllm.utterance_token import UtteranceToken

LABELS = ["Neutral", "Happy", "Sad", "Angry"]


def test_label_tokens_are_the_ones_the_answer_spells():
    builder = PromptBuilder(make_tiny_tokenizer(), LABELS, n_queries=2)
    ids = builder.label_token_ids()
    for label, label_ids in zip(LABELS, ids):
        example = builder.training_example("ser", "", label, random.Random(0))
        spelled = [
            token
            for token, span in zip(example["input_ids"], example["span_ids"])
            if span == EMOTION
        ]
        assert spelled == label_ids


def test_anchor_teaches_the_mapper_an_utterance_level_class():
    """Clips that differ only by a small per-class offset of every frame
    (the RAVDESS situation): the anchor loss alone makes the utterance
    token point at the right class name."""
    torch.manual_seed(0)
    n_classes, width = 4, 12
    offsets = 0.05 * torch.randn(n_classes, width)
    shared = torch.randn(30, width)

    def clips(count):
        labels = torch.arange(count) % n_classes
        frames = shared + 0.02 * torch.randn(count, 30, width)
        return frames + offsets[labels][:, None, :], labels

    mapper = QPMapper(
        width,
        16,
        n_queries=4,
        d_model=16,
        nhead=4,
        num_layers=1,
        dropout=0.0,
        output_norm=True,
        utterance_token=UtteranceToken(width, 16, 16),
    )
    anchor = LabelAnchor(
        label_embeddings(torch.randn(30, 16), [[1], [2, 3], [4], [5]]),
        token_index=mapper.utterance_token_index,
    )
    optimizer = torch.optim.Adam(mapper.parameters(), lr=3e-3)
    frames, labels = clips(64)
    for _ in range(150):
        optimizer.zero_grad()
        anchor.loss(mapper(frames), labels).backward()
        optimizer.step()
    mapper.eval()
    test_frames, test_labels = clips(32)
    accuracy = (anchor(mapper(test_frames)).argmax(-1) == test_labels).float()
    assert accuracy.mean().item() >= 0.9
