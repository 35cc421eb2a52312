"""Frozen-encoder feature cache: same frames, keyed folders, reuse."""

import os

import speechbrain as sb
import torch
from speechbrain.integrations.huggingface.wavlm import WavLM

from speechbrain_emosllm.features import (
    cache_encoder_outputs,
    feature_cache_key,
    load_cached_features,
)
from speechbrain_emosllm.testing import make_tiny_wavlm


def clips_dataset(tiny_corpus):
    data = sb.dataio.dataset.DynamicItemDataset.from_json(
        os.path.join(tiny_corpus, "valid.json")
    )

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio(wav):
        return sb.dataio.dataio.read_audio(wav)

    data.add_dynamic_item(audio)
    data.set_output_keys(["id", "sig"])
    return data


def test_cached_frames_equal_online_frames(tiny_models, tiny_corpus, tmp_path):
    encoder = WavLM(tiny_models["encoder"], str(tmp_path / "hub"), freeze=True)
    data = clips_dataset(tiny_corpus)
    folder = str(tmp_path / "cache")
    assert cache_encoder_outputs(
        encoder, data, folder, batch_size=1, dtype="float32"
    ) == len(data)
    assert cache_encoder_outputs(encoder, data, folder) == 0  # reused
    for item in data:
        online = encoder(item["sig"][None], torch.ones(1))[0]
        cached = load_cached_features(folder, item["id"])
        torch.testing.assert_close(cached, online)


def test_batched_float16_cache_stays_close(tiny_models, tiny_corpus, tmp_path):
    encoder = WavLM(tiny_models["encoder"], str(tmp_path / "hub"), freeze=True)
    data = clips_dataset(tiny_corpus)
    folder = str(tmp_path / "cache16")
    cache_encoder_outputs(encoder, data, folder, batch_size=4)
    item = data[0]
    online = encoder(item["sig"][None], torch.ones(1))[0]
    cached = load_cached_features(folder, item["id"])
    assert cached.shape == online.shape
    assert (cached - online).abs().max() < 0.05 * online.abs().max()


def test_the_key_changes_with_the_encoder_and_the_audio(tiny_models, tmp_path):
    encoder = WavLM(tiny_models["encoder"], str(tmp_path / "hub"), freeze=True)
    key = feature_cache_key(encoder, tiny_models["encoder"], 16000)
    assert key == feature_cache_key(encoder, tiny_models["encoder"], 16000)
    assert key != feature_cache_key(encoder, tiny_models["encoder"], 8000)
    assert key != feature_cache_key(
        encoder, tiny_models["encoder"], 16000, dtype="float32"
    )
    other = make_tiny_wavlm(str(tmp_path / "other"), hidden_size=48)
    other_encoder = WavLM(other, str(tmp_path / "hub"), freeze=True)
    assert key != feature_cache_key(other_encoder, other, 16000)
    # Same folder, new weights (e.g. converted again): a new key.
    before = feature_cache_key(other_encoder, other, 16000)
    os.utime(os.path.join(other, "model.safetensors"), (1, 1))
    assert feature_cache_key(other_encoder, other, 16000) != before
