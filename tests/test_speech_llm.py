"""SpeechLLM: splicing, masking, label alignment, scoring, learning."""

import random

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig

from speechbrain_emosllm import PromptBuilder, QPMapper, SpeechLLM
from speechbrain_emosllm.answer_scoring import (
    generate_answers,
    score_labels,
    shared_prefix_length,
)
from speechbrain_emosllm.prompts import IGNORE

LABELS = ["Neutral", "Happy", "Sad", "Frustrated"]
N_QUERIES = 3


def lora(**kwargs):
    options = dict(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0
    )
    options.update(kwargs)
    return LoraConfig(**options)


@pytest.fixture(scope="module")
def llm(tiny_models):
    torch.manual_seed(0)
    # Non-zero LoRA B so that the adapters change the outputs.
    model = SpeechLLM(
        tiny_models["llm"], lora_config=lora(init_lora_weights=False)
    )
    return model.eval()


@pytest.fixture(scope="module")
def builder(llm):
    return PromptBuilder(llm.tokenizer, LABELS, N_QUERIES)


def make_batch(builder, items, task="joint"):
    examples = [
        builder.training_example(task, text, emo, random.Random(i))
        for i, (text, emo) in enumerate(items)
    ]
    length = max(len(e["input_ids"]) for e in examples)
    ids = torch.zeros(len(examples), length, dtype=torch.long)
    spans = torch.full_like(ids, IGNORE)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        ids[row, :n] = torch.tensor(example["input_ids"])
        spans[row, :n] = torch.tensor(example["span_ids"])
    lengths = torch.tensor([len(e["input_ids"]) for e in examples])
    starts = torch.tensor([e["audio_start"] for e in examples])
    return ids, lengths, starts, spans


def test_audio_embeddings_land_in_their_slots(llm, builder):
    ids, _, starts, _ = make_batch(builder, [("hi", "Sad"), ("a b c", "Happy")])
    audio = torch.randn(2, N_QUERIES, llm.hidden_size)
    embeds = llm.embed_with_audio(ids, starts, audio)
    text = llm.hf_model.get_input_embeddings()(ids)
    for row in range(2):
        s = int(starts[row])
        torch.testing.assert_close(embeds[row, s : s + N_QUERIES], audio[row])
        torch.testing.assert_close(embeds[row, :s], text[row, :s])
        torch.testing.assert_close(
            embeds[row, s + N_QUERIES :], text[row, s + N_QUERIES :]
        )


def test_loss_equals_cross_entropy_of_the_answer_tokens(llm, builder):
    ids, lengths, starts, spans = make_batch(builder, [("the cat", "Sad")])
    audio = torch.randn(1, N_QUERIES, llm.hidden_size)
    out = llm.answer_loss(audio, ids, lengths, starts, spans, torch.ones(3))
    embeds = llm.embed_with_audio(ids, starts, audio)
    logits = llm.model(inputs_embeds=embeds).logits[0]
    answer = (spans[0] != IGNORE).nonzero().squeeze(1)
    expected = F.cross_entropy(logits[answer - 1], ids[0, answer])
    torch.testing.assert_close(out["loss"], expected, atol=1e-5, rtol=1e-5)


def test_padding_in_a_batch_does_not_change_the_loss(llm, builder):
    audio = torch.randn(2, N_QUERIES, llm.hidden_size)
    short = ("hi", "Sad")
    long = ("the cat sat on the mat with a hat", "Happy")
    ids, lengths, starts, spans = make_batch(builder, [short, long])
    assert lengths[0] < lengths[1]
    ones = torch.ones(3)
    rows = []
    for row in range(2):
        n = int(lengths[row])
        rows.append(
            llm.answer_loss(
                audio[row : row + 1],
                ids[row : row + 1, :n],
                lengths[row : row + 1],
                starts[row : row + 1],
                spans[row : row + 1, :n],
                ones,
            )["loss"]
        )
    # The short row, padded to the long row's length, keeps its loss.
    padded = llm.answer_loss(
        audio[:1], ids[:1], lengths[:1], starts[:1], spans[:1], ones
    )["loss"]
    torch.testing.assert_close(padded, rows[0], atol=1e-5, rtol=1e-5)
    # The batch loss is the token-weighted mean of the rows' losses.
    counts = (spans[:, 1:] != IGNORE).sum(1).float()
    both = llm.answer_loss(audio, ids, lengths, starts, spans, ones)["loss"]
    expected = (counts * torch.stack(rows)).sum() / counts.sum()
    torch.testing.assert_close(both, expected, atol=1e-5, rtol=1e-5)


def test_span_weights_select_the_emotion_loss(llm, builder):
    batch = make_batch(builder, [("the cat", "Sad")])
    audio = torch.randn(1, N_QUERIES, llm.hidden_size)
    emotion_only = llm.answer_loss(audio, *batch, torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(emotion_only["loss"], emotion_only["emotion"])
    transcript_only = llm.answer_loss(
        audio, *batch, torch.tensor([0.0, 1.0, 0.0])
    )
    torch.testing.assert_close(
        transcript_only["loss"], transcript_only["transcript"]
    )


def shuffled_ser_prefixes(builder):
    rng = random.Random(3)
    return [builder.inference_prefix("ser_only", rng=rng) for _ in range(3)]


def joint_oracle_prefixes(builder):
    return [
        builder.inference_prefix("joint_oracle", t)
        for t in ("hi", "the cat sat on the mat")
    ]


def first_tokens(label_ids):
    return [ids[:1] for ids in label_ids]


@pytest.mark.parametrize(
    "make_prefixes, make_labels",
    [
        # One shared start, then rows of different lengths.
        (joint_oracle_prefixes, list),
        # Paraphrases and label orders: little or nothing shared.
        (shuffled_ser_prefixes, list),
        # One-token labels: the prompt's last position scores them all.
        (joint_oracle_prefixes, first_tokens),
        # One clip: nothing to share, one pass over its prompt.
        (lambda b: joint_oracle_prefixes(b)[1:], list),
    ],
    ids=["shared_start", "paraphrases", "one_token_labels", "one_clip"],
)
def test_label_scores_equal_full_sequence_log_likelihoods(
    llm, builder, make_prefixes, make_labels
):
    prefixes = make_prefixes(builder)
    label_ids = make_labels(builder.label_ids)
    length = max(len(p["input_ids"]) for p in prefixes)
    ids = torch.tensor(
        [
            p["input_ids"] + [0] * (length - len(p["input_ids"]))
            for p in prefixes
        ]
    )
    lengths = torch.tensor([len(p["input_ids"]) for p in prefixes])
    starts = torch.tensor([p["audio_start"] for p in prefixes])
    audio = torch.randn(len(prefixes), N_QUERIES, llm.hidden_size)
    scores = score_labels(llm, audio, ids, lengths, starts, label_ids)
    assert scores.shape == (len(prefixes), len(label_ids))
    assert max(len(ids) for ids in builder.label_ids) > 2  # multi-token
    for row, prefix in enumerate(prefixes):
        for k, label in enumerate(label_ids):
            full = torch.tensor([prefix["input_ids"] + label])
            embeds = llm.embed_with_audio(
                full, starts[row : row + 1], audio[row : row + 1]
            )
            logp = llm.model(inputs_embeds=embeds).logits[0].log_softmax(-1)
            n = len(prefix["input_ids"])
            expected = sum(logp[n - 1 + j, t] for j, t in enumerate(label))
            assert scores[row, k].item() == pytest.approx(
                expected.item(), abs=1e-4
            )


def test_a_fixed_prompt_shares_everything_before_the_audio(builder):
    # The label-scoring test's first case runs the shared start once;
    # with paraphrases the rows share less.
    fixed = [builder.inference_prefix("ser_only") for _ in range(2)]
    ids = torch.tensor([p["input_ids"] for p in fixed])
    starts = torch.tensor([p["audio_start"] for p in fixed])
    assert shared_prefix_length(ids, starts) == fixed[0]["audio_start"] > 0
    varied = shuffled_ser_prefixes(builder)
    length = max(len(p["input_ids"]) for p in varied)
    ids = torch.tensor(
        [p["input_ids"] + [0] * (length - len(p["input_ids"])) for p in varied]
    )
    starts = torch.tensor([p["audio_start"] for p in varied])
    assert shared_prefix_length(ids, starts) < int(starts.min())


def test_generation_stops_and_returns_lists(llm, builder):
    prefix = builder.inference_prefix("asr")
    ids = torch.tensor([prefix["input_ids"]])
    out = generate_answers(
        llm,
        torch.randn(1, N_QUERIES, llm.hidden_size),
        ids,
        torch.tensor([ids.shape[1]]),
        torch.tensor([prefix["audio_start"]]),
        5,
        builder.end_of_turn_ids,
    )
    assert len(out) == 1 and len(out[0]) <= 5


def test_a_few_steps_on_one_batch_drive_the_loss_down(tiny_models):
    torch.manual_seed(0)
    llm = SpeechLLM(tiny_models["llm"], lora_config=lora())
    builder = PromptBuilder(llm.tokenizer, LABELS, N_QUERIES)
    mapper = QPMapper(
        8, llm.hidden_size, N_QUERIES, d_model=32, nhead=4, num_layers=1
    )
    frames = torch.randn(4, 20, 8)
    batch = make_batch(
        builder,
        [
            ("yes no", "Sad"),
            ("the cat", "Happy"),
            ("mat", "Neutral"),
            ("no", "Frustrated"),
        ],
    )
    params = [
        p
        for p in list(mapper.parameters()) + list(llm.parameters())
        if p.requires_grad
    ]
    assert llm.count_trainable() > 0
    optimizer = torch.optim.AdamW(params, lr=2e-2)
    losses = []
    for _ in range(25):
        loss = llm.answer_loss(mapper(frames), *batch, torch.ones(3))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_lora_weights_round_trip_through_checkpoint_hooks(
    tiny_models, tmp_path
):
    torch.manual_seed(1)
    source = SpeechLLM(
        tiny_models["llm"], lora_config=lora(init_lora_weights=False)
    )
    source._save(tmp_path / "lora.ckpt")
    target = SpeechLLM(tiny_models["llm"], lora_config=lora())
    target._load(tmp_path / "lora.ckpt")
    for key, value in source.trainable_state_dict().items():
        torch.testing.assert_close(target.trainable_state_dict()[key], value)
    frozen = SpeechLLM(tiny_models["llm"])
    with pytest.raises(ValueError, match="holds LoRA weights"):
        frozen._load(tmp_path / "lora.ckpt")
