"""Frozen-encoder feature cache: same frames, keyed folders, reuse."""

import os

import speechbrain as sb
import torch
from speechbrain.integrations.huggingface.wavlm import WavLM

from speechbrain_emosllm.features import (
    cache_encoder_outputs,
    cached_feature_path,
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
    data.set_output_keys(["id", "wav", "sig"])
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
        cached = load_cached_features(folder, item["id"], item["wav"])
        torch.testing.assert_close(cached, online)


def test_batched_float16_cache_stays_close(tiny_models, tiny_corpus, tmp_path):
    encoder = WavLM(tiny_models["encoder"], str(tmp_path / "hub"), freeze=True)
    data = clips_dataset(tiny_corpus)
    folder = str(tmp_path / "cache16")
    cache_encoder_outputs(encoder, data, folder, batch_size=4)
    item = data[0]
    online = encoder(item["sig"][None], torch.ones(1))[0]
    with data.output_keys_as(["wav"]):
        wav = data[0]["wav"]
    cached = load_cached_features(folder, item["id"], wav)
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


def test_changed_audio_colliding_ids_and_truncated_files(
    tiny_models, tiny_corpus, tmp_path, caplog
):
    import json
    import shutil

    encoder = WavLM(tiny_models["encoder"], str(tmp_path / "hub"), freeze=True)
    manifest = json.load(open(os.path.join(tiny_corpus, "valid.json")))
    first, second = list(manifest.values())[:2]
    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(first["wav"], audio / "a.wav")
    shutil.copy(second["wav"], audio / "b.wav")
    rows = {
        "spk1/utt1": dict(first, wav=str(audio / "a.wav")),
        "spk1_utt1": dict(second, wav=str(audio / "b.wav")),
    }
    (tmp_path / "m.json").write_text(json.dumps(rows))
    data = sb.dataio.dataset.DynamicItemDataset.from_json(
        str(tmp_path / "m.json")
    )

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_item(wav):
        return sb.dataio.dataio.read_audio(wav)

    data.add_dynamic_item(audio_item)
    data.set_output_keys(["id", "sig"])
    folder = str(tmp_path / "cache")
    assert cache_encoder_outputs(encoder, data, folder, dtype="float32") == 2
    a = load_cached_features(folder, "spk1/utt1", rows["spk1/utt1"]["wav"])
    b = load_cached_features(folder, "spk1_utt1", rows["spk1_utt1"]["wav"])
    assert not torch.equal(a, b)  # two ids, two files
    # The audio changes: its frames are encoded again.
    shutil.copy(second["wav"], audio / "a.wav")
    os.utime(audio / "a.wav", ns=(1, 1))
    assert cache_encoder_outputs(encoder, data, folder, dtype="float32") == 1
    a2 = load_cached_features(folder, "spk1/utt1", rows["spk1/utt1"]["wav"])
    torch.testing.assert_close(a2, b)
    # A truncated file is named and re-encoded.
    path = cached_feature_path(folder, "spk1_utt1", rows["spk1_utt1"]["wav"])
    with open(path, "r+b") as f:
        f.truncate(100)
    with caplog.at_level("WARNING"):
        assert cache_encoder_outputs(encoder, data, folder) == 1
    assert "unreadable cache file" in caplog.text and path in caplog.text
