"""QPMapper: shapes, padding invariance, training signal, YAML use."""

import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_emosllm import QPMapper


def small_mapper(**kwargs):
    options = dict(
        input_size=12,
        output_size=20,
        n_queries=5,
        d_model=16,
        nhead=4,
        num_layers=2,
    )
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
