"""The encoder adapters: Whisper on the clips' own lengths, batch mates."""

import pytest
import torch
from speechbrain.utils.data_utils import batch_pad_right

from speechbrain_emosllm.encoders import WhisperFrames
from speechbrain_emosllm.testing import make_tiny_whisper


@pytest.fixture(scope="module")
def whisper_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whisper")
    return make_tiny_whisper(str(folder / "hf"), num_layers=2)


def encoder(folder, tmp_path, **options):
    return WhisperFrames(
        folder, str(tmp_path / "sb"), output_all_hiddens=True, **options
    ).eval()


def test_own_length_frames_do_not_depend_on_batch_mates(
    whisper_folder, tmp_path
):
    """A 1.5-s clip alone and padded next to a 4-s one: the same frames
    (every layer); the batch is encoded on 4 s, not 30."""
    whisper = encoder(whisper_folder, tmp_path)
    generator = torch.Generator().manual_seed(0)
    short = 0.01 * torch.randn(24000, generator=generator)
    long = 0.9 * torch.randn(64000, generator=generator)
    alone = whisper(short[None], torch.ones(1))
    wavs, lens = batch_pad_right([long, short])
    batched = whisper(wavs, lens)
    assert alone.shape == (1, 75, 3, 32)
    assert batched.shape == (2, 200, 3, 32)
    assert torch.allclose(batched[1, :75], alone[0], atol=1e-4)
    assert whisper.cache_options["window"] == "own_length"


def test_a_30_s_clip_gives_the_padded_lobes_frames(whisper_folder, tmp_path):
    """Own length and the lobe's 30-s window agree on a full window, and
    the padded option keeps the earlier cache key."""
    own = encoder(whisper_folder, tmp_path)
    padded = encoder(whisper_folder, tmp_path, pad_to_window=True)
    clip = torch.randn(1, 480000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(own(clip), padded(clip), atol=1e-5)
    assert "window" not in padded.cache_options
    short = clip[:, :32000]
    assert own(short).shape == padded(short).shape == (1, 100, 3, 32)
