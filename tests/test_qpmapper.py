"""QPMapper: shapes, padding invariance, training signal, YAML use."""

import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_emosllm import QPMapper
from speechbrain_emosllm.utterance_token import UtteranceToken


def small_mapper(**kwargs):
    options = dict(
        input_size=12,
        output_size=20,
        n_queries=5,
        d_model=16,
        nhead=4,
        num_layers=2,
    )
    if kwargs.pop("token", False):
        options["utterance_token"] = UtteranceToken(12, 20, 16)
    options.update(kwargs)
    return QPMapper(**options)


def test_output_shape_is_batch_queries_output_size():
    mapper = small_mapper()
    out = mapper(torch.randn(3, 40, 12), torch.tensor([1.0, 0.5, 0.25]))
    assert out.shape == (3, 5, 20)


def test_padded_frames_do_not_change_a_sample_output():
    torch.manual_seed(0)
    mapper = small_mapper().eval()
    short = torch.randn(1, 30, 12)
    alone = mapper(short, torch.tensor([1.0]))
    padded = torch.cat([short, 100 * torch.randn(1, 20, 12)], dim=1)
    batch = torch.cat([padded, torch.randn(1, 50, 12)])
    together = mapper(batch, torch.tensor([30 / 50, 1.0]))
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-5)


def test_frame_order_matters_with_positional_encoding():
    torch.manual_seed(0)
    mapper = small_mapper().eval()
    frames = torch.randn(1, 10, 12)
    flipped = frames.flip(1)
    assert not torch.allclose(mapper(frames), mapper(flipped), atol=1e-4)
    unordered = small_mapper(positional_encoding=False).eval()
    torch.testing.assert_close(
        unordered(frames), unordered(flipped), atol=1e-5, rtol=1e-5
    )


def test_queries_and_projections_receive_gradients():
    mapper = small_mapper()
    mapper(torch.randn(2, 8, 12)).pow(2).mean().backward()
    for name, param in mapper.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_mapper_is_usable_from_a_yaml_outside_the_recipe():
    hparams = load_hyperpyyaml("""
    ssl_dim: 12
    llm_dim: 20
    mapper: !new:speechbrain_emosllm.QPMapper
        input_size: !ref <ssl_dim>
        output_size: !ref <llm_dim>
        n_queries: 3
        d_model: 16
        nhead: 2
        num_layers: 1
    """)
    out = hparams["mapper"](torch.randn(2, 7, 12), torch.tensor([1.0, 0.5]))
    assert out.shape == (2, 3, 20)


def clip_variation(mapper, n_clips=16, seed=0):
    """Spread of the outputs across clips of one sentence, relative to RMS.

    The clips share their frames (the same words) up to a small
    utterance-level offset (how they were said) and a little frame noise,
    which is what RAVDESS looks like to a frozen encoder.
    """
    generator = torch.Generator().manual_seed(seed)
    sentence = 3 * torch.randn(1, 100, 12, generator=generator)
    manner = 0.1 * torch.randn(n_clips, 1, 12, generator=generator)
    noise = 0.1 * torch.randn(n_clips, 100, 12, generator=generator)
    frames = sentence + manner + noise
    mapper.train()
    mapper(frames)  # statistics of the utterance summary
    with torch.no_grad():
        out = mapper.eval()(frames)
    spread = (out - out.mean(0)).pow(2).mean()
    return (spread / out.pow(2).mean()).sqrt().item()


def test_utterance_level_cues_reach_the_outputs_with_the_token():
    """The depth where RAVDESS's emotion was lost (recipe README).

    Without the summary the 32 outputs of a real P3 mapper varied by ~0.1%
    between RAVDESS clips and the SER-only answer stayed at one class.
    """
    torch.manual_seed(0)
    plain = clip_variation(small_mapper(dropout=0.0))
    torch.manual_seed(0)
    summary = clip_variation(small_mapper(dropout=0.0, token=True))
    assert plain < 0.15
    assert summary > 0.5


def test_token_keeps_padding_invariance_and_single_clip_batches():
    torch.manual_seed(0)
    mapper = small_mapper(token=True, n_layers=3)
    mapper(torch.randn(4, 30, 3, 12))  # statistics
    mapper.eval()
    short = torch.randn(1, 30, 3, 12)
    alone = mapper(short, torch.tensor([1.0]))
    padded = torch.cat([short, 100 * torch.randn(1, 20, 3, 12)], dim=1)
    batch = torch.cat([padded, torch.randn(1, 50, 3, 12)])
    together = mapper(batch, torch.tensor([30 / 50, 1.0]))
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-5)
    mapper.train()
    assert mapper(short).shape == (1, 5, 20)  # no batch statistics of one


def test_output_norm_puts_outputs_at_the_embedding_scale():
    mapper = small_mapper(output_norm=True)
    embeddings = 0.05 * torch.randn(1000, 20)
    mapper.match_scale(embeddings)
    out = mapper(10 * torch.randn(2, 8, 12))
    rms = out.pow(2).mean(-1).sqrt()
    torch.testing.assert_close(
        rms, torch.full_like(rms, embeddings.pow(2).mean().sqrt().item())
    )
