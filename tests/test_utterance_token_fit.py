"""The posterior token fitted as a linear probe, then frozen."""

import pytest
import torch
import torch.nn.functional as F

from speechbrain_emosllm import QPMapper
from speechbrain_emosllm.checkpoints import (
    load_parameters_except,
    transfer_parameters,
)
from speechbrain_emosllm.label_anchor import LabelAnchor
from speechbrain_emosllm.utterance_token import (
    ClassPosterior,
    PosteriorToken,
    UtteranceToken,
)
from speechbrain_emosllm.utterance_token_fit import (
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


def mapper(posterior=True, n_queries=3):
    torch.manual_seed(0)
    if posterior:
        token = PosteriorToken(WIDTH, 16, 16, n_classes=len(LABELS))
    else:
        token = UtteranceToken(WIDTH, 16, 16)
    return QPMapper(
        WIDTH,
        16,
        n_queries=n_queries,
        d_model=16,
        nhead=2,
        num_layers=1,
        dropout=0.0,
        n_layers=LAYERS,
        output_norm=True,
        utterance_token=token,
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
    return fit


def test_the_anchor_decides_like_the_fitted_probe_and_keeps_it():
    """The fitted token's cosine profile ranks the classes like the probe,
    and training the rest of the mapper (the LLM's loss stands in as a
    loss on the other outputs) leaves the token's classifier unchanged."""
    model = mapper()
    names = torch.randn(len(LABELS), 16)
    fit = fitted(model, names)
    assert fit["layer_weights"] == [0.0, 0.0, 1.0]  # the informative last
    assert fit["layer_choice"] == "last_layer"
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
        if name.startswith(("layer_sum", "utterance_token.head"))
        or name.startswith("utterance_token.norm")
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


def test_only_a_posterior_token_is_fitted():
    plain = QPMapper(WIDTH, 16, n_queries=2, d_model=16, nhead=2, num_layers=1)
    with pytest.raises(TypeError, match="PosteriorToken.*NoneType"):
        write_token_probe(plain, {"probe": None}, torch.randn(4, 16))
    with pytest.raises(TypeError, match="UtteranceToken"):
        write_token_probe(mapper(False), {"probe": None}, torch.randn(4, 16))


def test_a_posterior_token_freezes_what_it_reads_and_nothing_else():
    model = mapper()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {
        "layer_sum.logits",
        "utterance_token.head.classifier.weight",
        "utterance_token.head.classifier.bias",
        "utterance_token.head.readout.weight",
    }
    linear = mapper(posterior=False)
    trained = {n for n, p in linear.named_parameters() if p.requires_grad}
    assert {"layer_sum.logits", "utterance_token.head.weight"} <= trained


def test_a_posterior_token_carries_the_probe_posterior():
    """Along each class name's unit embedding, the token reads that
    class's probe posterior: the likely classes are the whole vector."""
    model = mapper()
    assert isinstance(model.utterance_token.head, ClassPosterior)
    names = torch.randn(len(LABELS), 16)
    fit = fitted(model, names)
    model.eval()
    mean_frames = pooled(clips(40, 3)[0])[:, 2]
    norm = model.utterance_token.norm
    standardised = (mean_frames - norm.running_mean) / torch.sqrt(
        norm.running_var + norm.eps
    )
    token = model.utterance_token.head(standardised)
    along = token @ F.normalize(names, dim=-1).T
    posterior = fit["probe"](mean_frames[:, None]).softmax(-1)
    assert torch.allclose(along, posterior, atol=1e-4)


def test_a_posterior_token_starts_from_a_linear_token_predecessor(tmp_path):
    """The emotion phase warm-starts from an ASR phase whose token was a
    linear projection: everything else loads, the token is fitted anew."""
    predecessor = mapper(posterior=False)
    path = tmp_path / "qpmapper.ckpt"
    torch.save(predecessor.state_dict(), path)
    model = mapper()
    with pytest.raises(RuntimeError, match="utterance_token.head"):
        model.load_state_dict(torch.load(path))
    load_parameters_except(model, str(path), "utterance_token.head.")
    new, old = model.state_dict(), predecessor.state_dict()
    for name, value in old.items():
        if not name.startswith("utterance_token.head."):
            assert torch.equal(new[name], value), name


def test_a_predecessor_with_other_queries_is_an_error_naming_its_file(
    tmp_path,
):
    """The demo's P2 has 8 queries, ``ser.yaml`` 32: starting one from the
    other names the checkpoint file, the parameter and the options."""
    from speechbrain.utils.checkpoints import Checkpoint

    path = tmp_path / "qpmapper.ckpt"
    torch.save(mapper(n_queries=2).state_dict(), path)
    saved = Checkpoint(str(tmp_path), {}, {"qpmapper": str(path)})
    with pytest.raises(ValueError) as error:
        transfer_parameters(
            saved, {"qpmapper": mapper()}, {"qpmapper": "utterance_token."}
        )
    message = str(error.value)
    assert message.startswith(f"{path}: its qpmapper does not fit")
    assert "size mismatch for queries" in message
    assert "n_queries" in message


def test_a_stacked_brain_trains_on_out_of_fold_posteriors_only():
    """In training, a batch's ``token_posterior`` (stacking) is the token
    the LLM reads; in evaluation the fitted head decides; token dropout
    leaves the uniform posterior, in training only."""
    import speechbrain as sb
    from speechbrain.dataio.batch import PaddedBatch

    from speechbrain_emosllm.brain import EmoSLLM

    model = mapper()
    names = torch.randn(len(LABELS), 16)
    fitted(model, names)
    frames = clips(4, 5)[0]
    given = torch.eye(len(LABELS))[[3, 2, 1, 0]]
    batch = PaddedBatch(
        [
            {"id": str(i), "feats": frames[i], "token_posterior": given[i]}
            for i in range(4)
        ]
    )
    brain = EmoSLLM(
        modules={"qpmapper": model},
        hparams={"feature_cache": True},
        run_opts={"device": "cpu"},
        labels=LABELS,
        decoder=None,
    )
    readout = model.utterance_token.head.readout
    model.train()
    token = brain.compute_forward(batch, sb.Stage.TRAIN)[:, 0]
    # Up to the output norm's scale, the token lays out the given posterior.
    expected = F.rms_norm(readout(given), (16,)) * model.log_output_gain.exp()
    assert torch.allclose(token, expected, atol=1e-5)
    model.eval()
    token = brain.compute_forward(batch, sb.Stage.VALID)[:, 0]
    assert not torch.allclose(token, expected, atol=1e-2)
    # Given the head's own posteriors, every output is the plain one's:
    # only the token's posterior is replaced (the queries still get the
    # utterance summary).
    own = model.utterance_token.head.posterior(
        model.utterance_token.standardise(
            torch.einsum(
                "bld,l->bd", pooled(frames), model.layer_sum.layer_weights()
            )
        )
    )
    assert torch.allclose(model(frames, None, own), model(frames), atol=1e-5)
    model.train()
    model.utterance_token.dropout = 1.0
    token = brain.compute_forward(batch, sb.Stage.TRAIN)[:, 0]
    uniform = readout(torch.full((1, len(LABELS)), 1 / len(LABELS)))
    uniform = F.rms_norm(uniform, (16,)) * model.log_output_gain.exp()
    assert torch.allclose(token, uniform.expand(4, -1), atol=1e-5)


def test_out_of_fold_posteriors_never_see_their_speaker():
    """Each group's posteriors come from a probe fitted on the others: a
    group whose labels contradict the rest is predicted wrong, where an
    in-fold probe would have learned it."""
    from speechbrain_emosllm.stacking import out_of_fold_posteriors

    torch.manual_seed(0)
    y = torch.arange(70) % 2
    x = torch.randn(70, 1, 4)
    x[:, 0, 0] += 6 * y
    y[60:] = 1 - y[60:]  # speaker "c" swaps the classes
    groups = ["a"] * 30 + ["b"] * 30 + ["c"] * 10
    posteriors = out_of_fold_posteriors(x, y, groups, 2, 1e-3)
    right = posteriors.argmax(-1) == y
    assert right[:60].float().mean() > 0.8
    assert right[60:].float().mean() < 0.1
    with pytest.raises(ValueError, match="two or more speakers"):
        out_of_fold_posteriors(x, y, ["a"] * 60, 2, 1e-3)


def test_batched_out_of_fold_probes_match_fitting_one_by_one():
    """One batched fit gives every (speaker, L2) probe the posteriors that
    fitting it alone gives, and leaves the same random state behind."""
    from speechbrain_emosllm.linear_probe import train_probe
    from speechbrain_emosllm.stacking import posteriors_per_penalty

    torch.manual_seed(0)
    y = torch.arange(90) % 4
    x = torch.randn(90, 1, 8)
    x[:, 0, :4] += 2 * F.one_hot(y, 4)
    groups = [f"s{i % 5}" for i in range(90)]
    penalties = [1e-3, 1e-1]
    batched = posteriors_per_penalty(x, y, groups, 4, penalties, seed=3)
    after_batched = torch.rand(1)
    for p_index, l2 in enumerate(penalties):
        for name in sorted(set(groups)):
            held = torch.tensor([g == name for g in groups])
            torch.manual_seed(3)
            probe = train_probe(x[~held], y[~held], 4, False, l2)
            with torch.no_grad():
                alone = probe(x[held]).softmax(-1)
            assert torch.allclose(batched[p_index, held], alone, atol=1e-4)
    assert torch.equal(torch.rand(1), after_batched)


def test_stacking_without_speakers_names_the_manifest():
    """out_of_fold_token needs spk_id; the error names the manifest."""
    from speechbrain.dataio.dataset import DynamicItemDataset

    from speechbrain_emosllm.recipe import fit_token

    hparams = {
        "feature_cache": True,
        "out_of_fold_token": True,
        "train_json": "/data/train.json",
    }
    datasets = {"train": DynamicItemDataset({"u1": {"wav": "a.wav"}})}
    with pytest.raises(ValueError, match="/data/train.json has no spk_id"):
        fit_token(hparams, datasets, LABELS, torch.zeros(4, 8))
