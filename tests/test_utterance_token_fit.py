"""The utterance token fitted as a linear probe, then frozen."""

import pytest
import torch
import torch.nn.functional as F

from speechbrain_emosllm import QPMapper
from speechbrain_emosllm.checkpoints import load_parameters_except
from speechbrain_emosllm.label_anchor import LabelAnchor
from speechbrain_emosllm.posterior_token import ClassPosteriorToken
from speechbrain_emosllm.utterance_token_fit import (
    check_token_classes,
    fit_token_probe,
    layer_candidates,
    write_token_probe,
)

LABELS = ["Neutral", "Happy", "Sad", "Angry"]
LAYERS, WIDTH = 3, 8


def clips(count, seed):
    """Frames whose class shows in layer 2's mean only (a small offset)."""
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.randn(
        len(LABELS), WIDTH, generator=torch.Generator().manual_seed(0)
    )
    labels = torch.arange(count) % len(LABELS)
    frames = torch.randn(count, 20, LAYERS, WIDTH, generator=generator)
    frames[:, :, 2] += 0.5 * offsets[labels][:, None]
    return frames, labels


def pooled(frames):
    return F.layer_norm(frames, frames.shape[-1:]).mean(1)


def mapper(token_classes=None):
    torch.manual_seed(0)
    return QPMapper(
        WIDTH,
        16,
        n_queries=3,
        d_model=16,
        nhead=2,
        num_layers=1,
        dropout=0.0,
        n_layers=LAYERS,
        utterance_summary=True,
        output_norm=True,
        utterance_token=True,
        token_classes=token_classes,
    )


def fitted(model, class_embeddings):
    train, valid = clips(120, 1), clips(60, 2)
    splits = {
        "train": (pooled(train[0]), train[1], None),
        "valid": (pooled(valid[0]), valid[1], [str(i) for i in range(60)]),
    }
    current = model.layer_sum.layer_weights()
    fit = fit_token_probe(splits, LABELS, layer_candidates(current, LAYERS))
    write_token_probe(model, fit, class_embeddings)
    model.freeze_utterance_token()
    return fit


@pytest.mark.parametrize("token_classes", [None, len(LABELS)])
def test_the_anchor_decides_like_the_fitted_probe_and_keeps_it(token_classes):
    """The fitted token's cosine profile ranks the classes like the probe,
    and training the rest of the mapper (the LLM's loss stands in as a
    loss on the other outputs) leaves the token's classifier unchanged."""
    model = mapper(token_classes)
    names = torch.randn(len(LABELS), 16)
    fit = fitted(model, names)
    assert fit["layer_weights"] == [0.0, 0.0, 1.0]  # the informative last
    assert fit["valid_macro_f1"] > 0.9

    test_frames, _ = clips(40, 3)
    anchor = LabelAnchor(names, scale=5.0, token_index=0)
    model.eval()
    probe_logits = fit["probe"](pooled(test_frames)[:, 2:3])
    decisions = anchor(model(test_frames)).argmax(-1)
    assert torch.equal(decisions, probe_logits.argmax(-1))

    frozen = {
        name: value.clone()
        for name, value in model.state_dict().items()
        if name.startswith(("layer_sum", "token_projection", "summary_norm"))
    }
    queries = model.queries.detach().clone()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    frames, _ = clips(16, 4)
    for _ in range(5):
        optimizer.zero_grad()
        model(frames)[:, 1:].pow(2).mean().backward()
        optimizer.step()
    state = model.state_dict()
    for name, value in frozen.items():
        assert torch.equal(state[name], value), name
    assert not torch.equal(model.queries, queries)  # the rest still learns
    model.eval()
    assert torch.equal(anchor(model(test_frames)).argmax(-1), decisions)


def test_a_mapper_without_layers_or_token_cannot_be_fitted():
    plain = QPMapper(WIDTH, 16, n_queries=2, d_model=16, nhead=2, num_layers=1)
    with pytest.raises(ValueError, match="utterance_token=True"):
        QPMapper(
            WIDTH,
            16,
            n_queries=2,
            d_model=16,
            nhead=2,
            num_layers=1,
            token_classes=4,
        )
    with pytest.raises(ValueError, match="layer_weighting"):
        write_token_probe(plain, {"probe": None}, torch.randn(4, 16))
    with pytest.raises(ValueError, match="utterance_token"):
        plain.freeze_utterance_token()


def test_a_posterior_token_carries_the_probe_posterior():
    """Along each class name's unit embedding, the token reads that
    class's probe posterior: the likely classes are the whole vector."""
    model = mapper(token_classes=len(LABELS))
    assert isinstance(model.token_projection, ClassPosteriorToken)
    names = torch.randn(len(LABELS), 16)
    fit = fitted(model, names)
    model.eval()
    mean_frames = pooled(clips(40, 3)[0])[:, 2]
    norm = model.summary_norm
    standardised = (mean_frames - norm.running_mean) / torch.sqrt(
        norm.running_var + norm.eps
    )
    token = model.token_projection(standardised)
    along = token @ F.normalize(names, dim=-1).T
    posterior = fit["probe"](mean_frames[:, None]).softmax(-1)
    assert torch.allclose(along, posterior, atol=1e-4)


def test_a_posterior_token_starts_from_a_linear_token_predecessor(tmp_path):
    """The emotion phase warm-starts from an ASR phase whose token was a
    linear projection: everything else loads, the token is fitted anew."""
    predecessor = mapper()
    path = tmp_path / "qpmapper.ckpt"
    torch.save(predecessor.state_dict(), path)
    model = mapper(token_classes=len(LABELS))
    with pytest.raises(RuntimeError, match="size mismatch|token_projection"):
        model.load_state_dict(torch.load(path))
    load_parameters_except(model, str(path), "token_projection.")
    new, old = model.state_dict(), predecessor.state_dict()
    for name, value in old.items():
        if not name.startswith("token_projection."):
            assert torch.equal(new[name], value), name
    check_token_classes(model, LABELS)
    with pytest.raises(ValueError, match="qpmapper_token_classes=3"):
        check_token_classes(model, LABELS[:3])
