"""Export -> EmotionLLM -> classify, the PEFT adapter, bad inputs, CLI."""

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from speechbrain.utils.data_utils import batch_pad_right

from conftest import run
from speechbrain_emosllm import SpeechLLM
from speechbrain_emosllm.checkpoints import find_best_checkpoint
from speechbrain_emosllm.cli import infer
from speechbrain_emosllm.export import ADAPTER_DIR, export_model
from speechbrain_emosllm.inference import EmotionLLM
from speechbrain_emosllm.modes import EMOTION_MODES, MODES


@pytest.fixture(scope="module")
def exported(curriculum, tmp_path_factory):
    output, _, _ = curriculum
    folder = str(tmp_path_factory.mktemp("export") / "model")
    before = sorted(os.listdir(os.path.join(output, "p3_joint")))
    export_model(os.path.join(output, "p3_joint"), folder)
    assert sorted(os.listdir(os.path.join(output, "p3_joint"))) == before
    return folder


@pytest.fixture(scope="module")
def model(exported, tmp_path_factory):
    return EmotionLLM.from_hparams(
        source=exported, savedir=str(tmp_path_factory.mktemp("savedir"))
    )


def test_export_layout(exported):
    names = set(os.listdir(exported))
    assert {
        "hyperparams.yaml",
        "qpmapper.ckpt",
        "labels.json",
        "README.md",
        ADAPTER_DIR,
    } <= names
    note = open(os.path.join(exported, "README.md")).read()
    assert "base LLM: " in note and "people you trust" in note
    assert json.load(open(os.path.join(exported, "labels.json"))) == [
        "Neutral",
        "Happy",
        "Sad",
        "Angry",
    ]
    with pytest.raises(FileExistsError, match="not empty"):
        export_model("unused", exported)


def test_the_model_folder_names_no_path_of_the_training_machine(
    curriculum, exported, tiny_models
):
    output, _, _ = curriculum
    machine_paths = [output, tiny_models["llm"], tiny_models["encoder"]]
    for root, _, files in os.walk(exported):
        for name in files:
            path = os.path.join(root, name)
            if name.endswith((".yaml", ".json", ".md", ".txt")):
                text = open(path, encoding="utf-8").read()
                for machine_path in machine_paths:
                    assert machine_path not in text, path
    # The local base models travel as copies, loaded from there.
    assert sorted(os.listdir(os.path.join(exported, "base_models"))) == [
        "encoder",
        "llm",
    ]


def test_a_failed_export_leaves_nothing_and_the_retry_works(
    curriculum, tmp_path
):
    output, _, _ = curriculum
    target = tmp_path / "model"
    # Phase 1 has no LoRA weights: the export fails halfway.
    with pytest.raises(ValueError, match="has no LoRA weights"):
        export_model(os.path.join(output, "p1_asr"), str(target))
    assert os.listdir(tmp_path) == []
    export_model(os.path.join(output, "p3_joint"), str(target))
    assert "qpmapper.ckpt" in os.listdir(target)
    assert os.listdir(tmp_path) == ["model"]


def test_export_umask_stale_partials_and_file_targets(
    curriculum, tmp_path, capsys
):
    import subprocess

    output, _, _ = curriculum
    phase = os.path.join(output, "p3_joint")
    # A staging folder of an export killed with SIGKILL: its process is gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".model.partial-{dead.pid}-abc"
    (stale / "base_models").mkdir(parents=True)
    # One of a running export (this process) is left alone.
    running = tmp_path / f".model.partial-{os.getpid()}-xyz"
    running.mkdir()
    previous = os.umask(0o022)
    try:
        export_model(phase, str(tmp_path / "model"))
    finally:
        os.umask(previous)
    assert not stale.exists() and running.exists()
    assert str(stale) in capsys.readouterr().err
    assert os.stat(tmp_path / "model").st_mode & 0o777 == 0o755

    target = tmp_path / "a_file"
    target.write_text("keep me")
    with pytest.raises(FileExistsError, match="is a file"):
        export_model(phase, str(target))
    assert target.read_text() == "keep me"


def test_peft_loads_the_adapter_with_identical_logits(
    curriculum, exported, tiny_models
):
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_models["llm"])
    plain = PeftModel.from_pretrained(
        base, os.path.join(exported, ADAPTER_DIR)
    ).eval()
    trained = SpeechLLM(
        tiny_models["llm"],
        lora_config=LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]
        ),
    )
    checkpoint = find_best_checkpoint(os.path.join(curriculum[0], "p3_joint"))
    trained._load(checkpoint.paramfiles["speech_llm"])
    trained.eval()
    ids = torch.randint(0, 300, (2, 12))
    expected = trained.model(input_ids=ids).logits
    torch.testing.assert_close(plain(input_ids=ids).logits, expected)
    untrained = AutoModelForCausalLM.from_pretrained(tiny_models["llm"])
    assert not torch.allclose(untrained(input_ids=ids).logits, expected)


def test_predictions_match_the_training_time_evaluation(
    curriculum, model, tiny_corpus
):
    """Same batches as the recipe's test loader: same labels per mode."""
    output, _, _ = curriculum
    manifest = json.load(open(os.path.join(tiny_corpus, "test.json")))
    ids = list(manifest)
    folder = os.path.join(output, "p3_joint", "test_test1")
    for mode in ("joint_generated", "ser_only", "joint_oracle"):
        expected = json.load(
            open(os.path.join(folder, f"{mode}_predictions.json"))
        )
        for start in range(0, len(ids), 4):
            group = ids[start : start + 4]
            signals = [model.load_audio(manifest[u]["wav"]) for u in group]
            batch, relative = batch_pad_right(signals)
            references = [manifest[u]["wrd"] for u in group]
            results = model.predict_batch(batch, relative, mode, references)
            for utt, result in zip(group, results):
                assert result["label"] == expected[utt]["prediction"], mode
                assert sum(result["probabilities"].values()) == pytest.approx(
                    1.0, abs=1e-4
                )
            # SpeechBrain's classifier convention, same decisions.
            out_prob, score, index, text_lab = model.classify_batch(
                batch, relative, mode, references
            )
            assert out_prob.shape == (len(group), len(model.labels))
            assert out_prob.exp().sum(-1) == pytest.approx(1.0, abs=1e-4)
            assert text_lab == [r["label"] for r in results]
            assert [model.labels[i] for i in index.tolist()] == text_lab
            assert torch.equal(score, out_prob.max(-1).values)


def test_classify_file_returns_speechbrains_tuple(model, tiny_corpus):
    wav = next(
        iter(json.load(open(os.path.join(tiny_corpus, "test.json"))).values())
    )["wav"]
    out_prob, score, index, text_lab = model.classify_file(wav, "ser_only")
    expected = model.predict_file(wav, "ser_only")
    assert text_lab == [expected["label"]]
    assert out_prob.shape == (1, len(model.labels))
    assert out_prob[0].exp().tolist() == pytest.approx(
        [expected["probabilities"][label] for label in model.labels], abs=1e-5
    )
    assert index.tolist() == [model.labels.index(expected["label"])]
    assert score.shape == (1,)
    with pytest.raises(ValueError, match="needs an emotion mode"):
        model.classify_file(wav, mode="asr")


def test_any_rate_and_channels_and_long_files(model, tiny_corpus, tmp_path):
    manifest = json.load(open(os.path.join(tiny_corpus, "test.json")))
    wav, rate = soundfile.read(next(iter(manifest.values()))["wav"])
    stereo = np.stack([wav[::2], 0.5 * wav[::2]], axis=1)  # 8 kHz stereo
    path = str(tmp_path / "stereo8k.wav")
    soundfile.write(path, stereo, rate // 2)
    result = model.predict_file(path)
    assert result["label"] in model.labels
    assert isinstance(result["transcript"], str)
    assert result["windows"] == 1
    long_path = str(tmp_path / "long.wav")
    soundfile.write(long_path, np.concatenate([wav] * 3), rate)
    model.hparams.max_audio_seconds = len(wav) / rate * 1.2
    try:
        long_result = model.predict_file(long_path, mode="ser_only")
    finally:
        model.hparams.max_audio_seconds = 15.0
    assert long_result["windows"] == 3
    assert long_result["label"] in model.labels
    assert (
        model.transcribe_file(path)
        == model.predict_file(path, mode="asr")["transcript"]
    )


def test_bad_inputs_give_errors_that_name_the_file(model, tmp_path):
    missing = str(tmp_path / "missing.wav")
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        model.classify_file(missing)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.wav"):
        model.classify_file(str(empty))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF garbage")
    with pytest.raises(ValueError, match="corrupt.wav"):
        model.classify_file(str(corrupt))
    with pytest.raises(ValueError, match="Unknown mode 'chat'"):
        model.classify_batch(torch.zeros(1, 8000), mode="chat")
    with pytest.raises(ValueError, match="needs the reference transcript"):
        model.classify_batch(torch.zeros(1, 8000), mode="joint_oracle")


def test_cli_reports_a_bad_file_and_keeps_going(
    model, exported, tiny_corpus, tmp_path
):
    manifest = json.load(open(os.path.join(tiny_corpus, "test.json")))
    good = [item["wav"] for item in list(manifest.values())[:2]]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    lines = io.StringIO()
    assert (
        infer(model, [good[0], str(bad), good[1]], "joint_generated", 2, lines)
        == 1
    )
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [r["file"] for r in records] == [str(bad), good[0], good[1]]
    assert "bad.wav" in records[0]["error"]
    assert all(r["label"] in model.labels for r in records[1:])
    # The real command line, on a folder.
    result = run(
        [
            "-m",
            "speechbrain_emosllm.cli",
            "--model",
            exported,
            "--mode",
            "ser_only",
            "--savedir",
            str(tmp_path / "sd"),
            os.path.dirname(good[0]),
        ],
        merge_output=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) >= 2 and all(r["mode"] == "ser_only" for r in records)


def test_cli_refuses_a_model_folder_that_runs_other_code(exported, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    marker = tmp_path / "ran"
    with open(folder / "hyperparams.yaml", "a", encoding="utf-8") as f:
        f.write(f'\nsurprise: !apply:os.system ["touch {marker}"]\n')
    result = run(
        [
            "-m",
            "speechbrain_emosllm.cli",
            "--model",
            str(folder),
            str(tmp_path),
        ],
        merge_output=False,
    )
    assert result.returncode == 2
    assert "!apply:os.system" in result.stderr
    assert "--trust-model" in result.stderr
    assert not marker.exists()
    assert result.stdout == ""


def test_long_audio_runs_in_bounded_batches_weighted_by_duration(
    model, monkeypatch
):
    rate = model.hparams.sample_rate
    seen = []
    original = model.predict_batch

    def recording(batch, *args, **kwargs):
        seen.append(batch.shape[0])
        return original(batch, *args, **kwargs)

    monkeypatch.setattr(model, "predict_batch", recording)
    monkeypatch.setattr(model.hparams, "max_audio_seconds", 0.5, raising=False)
    monkeypatch.setattr(model.hparams, "window_batch_size", 2, raising=False)
    signal = 0.1 * torch.randn(int(4.77 * rate))  # 9 windows + a 0.27 s tail
    result = model.predict_signal(signal, "ser_only", name="long")
    assert result["windows"] == 10
    assert seen == [2, 2, 2, 2, 2]  # never more than window_batch_size
    # A tail under 0.1 s joins the window before it instead of counting
    # as a window of its own.
    tail = model.predict_signal(signal[: int(1.05 * rate)], "ser_only")
    assert tail["windows"] == 2
    assert sum(tail["probabilities"].values()) == pytest.approx(1.0)


def test_cli_names_short_and_non_finite_audio_and_writes_strict_json(
    model, tiny_corpus, tmp_path
):
    manifest = json.load(open(os.path.join(tiny_corpus, "test.json")))
    good = next(iter(manifest.values()))["wav"]
    one = str(tmp_path / "one_sample.wav")
    soundfile.write(one, np.zeros(1, dtype="float32"), 16000)
    nan = str(tmp_path / "nan.wav")
    samples = np.zeros(16000, dtype="float32")
    samples[100] = np.nan
    soundfile.write(nan, samples, 16000, subtype="FLOAT")
    lines = io.StringIO()
    assert infer(model, [one, good, nan], "ser_only", 8, lines) == 2
    records = {
        r["file"]: r
        for r in (json.loads(line) for line in lines.getvalue().splitlines())
    }
    assert "too short to classify" in records[one]["error"]
    assert "NaN or infinite" in records[nan]["error"]
    assert records[good]["label"] in model.labels
    assert "NaN" not in lines.getvalue().replace("NaN or", "")


def test_cli_ends_quietly_on_a_closed_pipe(exported, tiny_corpus, tmp_path):
    import subprocess
    import sys

    manifest = json.load(open(os.path.join(tiny_corpus, "test.json")))
    folder = os.path.dirname(next(iter(manifest.values()))["wav"])
    command = [
        sys.executable,
        "-m",
        "speechbrain_emosllm.cli",
        "--model",
        exported,
        "--mode",
        "ser_only",
        "--batch-size",
        "1",
        "--savedir",
        str(tmp_path / "sd"),
        folder,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    stderr = process.stderr.read().decode()
    process.wait(timeout=300)
    assert "Traceback" not in stderr
    assert process.returncode in (0, 1)


def test_emosllm_infer_from_the_installed_wheel(
    exported, tiny_corpus, tmp_path
):
    """The plugin as a user installs it (a wheel, not this checkout) runs an
    exported model from outside the repository."""
    from test_packaging import build_wheel, install_wheel

    site = install_wheel(build_wheel(tmp_path), tmp_path)
    wav = next(
        iter(json.load(open(os.path.join(tiny_corpus, "test.json"))).values())
    )["wav"]
    env = dict(os.environ, PYTHONPATH=site, HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechbrain_emosllm.cli",
            "--model",
            exported,
            "--mode",
            "ser_only",
            wav,
        ],
        cwd=tmp_path,
        env=env,
        text=True,
        capture_output=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["label"] in ["Neutral", "Happy", "Sad", "Angry"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--batch-size", "-1"], "must be a positive integer: -1"),
        (["--batch-size", "0"], "must be a positive integer: 0"),
        (["--device", "cuda:7"], "--device cuda:7"),
        (["--device", "gpu"], "'gpu' is not a device"),
    ],
)
def test_infer_usage_errors_exit_2_before_loading(
    arguments, message, tmp_path, capsys
):
    from speechbrain_emosllm.cli import main

    model = tmp_path / "model"
    model.mkdir()
    (model / "hyperparams.yaml").write_text("labels: [a]\n")
    (model / "qpmapper.ckpt").write_bytes(b"")
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        main(["--model", str(model), *arguments, str(clip)])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_infer_refuses_empty_folders_and_training_folders(tmp_path, capsys):
    from speechbrain_emosllm.cli import main

    phase = tmp_path / "p3_joint"
    (phase / "save").mkdir(parents=True)
    (phase / "hyperparams.yaml").write_text("labels: [a]\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio")
    with pytest.raises(SystemExit) as exit_:
        main(["--model", str(phase), "--trust-model", str(empty)])
    assert exit_.value.code == 2
    assert "training phase folder" in capsys.readouterr().err
    model = tmp_path / "model"
    model.mkdir()
    (model / "hyperparams.yaml").write_text("labels: [a]\n")
    (model / "qpmapper.ckpt").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        main(["--model", str(model), str(empty)])
    assert exit_.value.code == 2
    assert "no audio files found in" in capsys.readouterr().err


def test_degenerate_audio_gets_named_errors(tmp_path):
    import soundfile

    from speechbrain_emosllm.audio import read_audio_file
    from speechbrain_emosllm.inference import check_signal

    header_only = tmp_path / "header.wav"
    soundfile.write(header_only, torch.zeros(0).numpy(), 16000)
    with pytest.raises(ValueError, match="has no samples: .*header.wav"):
        read_audio_file(str(header_only), 16000)
    loud = tmp_path / "loud.wav"
    soundfile.write(
        loud, torch.full((16000,), 1e30).numpy(), 16000, subtype="FLOAT"
    )
    signal = read_audio_file(str(loud), 16000)
    with pytest.raises(ValueError, match="loud.wav: peak amplitude 1e\\+30"):
        check_signal(signal, 16000, str(loud))


def refused_by_cli(folder, tmp_path):
    """Runs emosllm-infer on ``folder`` without --trust-model."""
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")
    result = run(
        ["-m", "speechbrain_emosllm.cli", "--model", str(folder), str(clip)],
        merge_output=False,
    )
    assert result.returncode == 2, result.stderr
    assert "--trust-model" in result.stderr or "recursion" in result.stderr
    assert result.stdout == ""
    return result.stderr


def test_cli_trust_boundary_holds_for_allowed_classes(exported, tmp_path):
    """An allowed class given an argument outside its signature (here
    trust_remote_code, which SpeechLLM would pass to from_pretrained), a
    bundled model with an auto_map or a Python file, and a recursive YAML
    alias are all refused before anything is built."""
    import shutil

    def copy(name):
        folder = tmp_path / name
        shutil.copytree(exported, folder)
        return folder

    folder = copy("remote_code")
    text = (folder / "hyperparams.yaml").read_text()
    text, count = re.subn(
        r"(speech_llm: !new:speechbrain_emosllm.SpeechLLM\n)( +)",
        r"\1\2trust_remote_code: true\n\2",
        text,
    )
    assert count == 1
    (folder / "hyperparams.yaml").write_text(text)
    assert "(argument trust_remote_code)" in refused_by_cli(folder, tmp_path)

    folder = copy("auto_map")
    config = folder / "base_models" / "config.json"
    config.parent.mkdir(exist_ok=True)
    config.write_text('{"auto_map": {"AutoModel": "evil.Model"}}')
    (config.parent / "evil.py").write_text("raise SystemExit('ran')\n")
    error = refused_by_cli(folder, tmp_path)
    assert "base_models/config.json" in error
    assert "base_models/evil.py" in error

    folder = copy("recursive")
    with open(folder / "hyperparams.yaml", "a", encoding="utf-8") as f:
        f.write("\nloop: &loop [*loop]\n")
    assert "recursion" in refused_by_cli(folder, tmp_path)


@pytest.mark.parametrize("mode", EMOTION_MODES)
def test_a_clips_answer_does_not_depend_on_its_batch_mates(model, mode):
    """A quiet 1.5-s clip alone, and batched after a loud 4-s one."""
    generator = torch.Generator().manual_seed(0)
    short = 0.01 * torch.randn(24000, generator=generator)
    long = 0.9 * torch.randn(64000, generator=generator).clamp(-1, 1)
    transcripts = None
    if MODES[mode].needs_reference:
        transcripts = ["kids are talking by the door"]
    alone = model.predict_batch(short[None], torch.ones(1), mode, transcripts)
    wavs, lens = batch_pad_right([long, short])
    batched = model.predict_batch(
        wavs, lens, mode, transcripts and transcripts * 2
    )
    probabilities = alone[0]["probabilities"]
    for label, value in batched[1]["probabilities"].items():
        assert value == pytest.approx(probabilities[label], abs=1e-3), label


def test_emosllm_eval_scores_a_labelled_folder(exported, tiny_corpus, tmp_path):
    """A new user's folder: a CSV of relative paths and labels, one clip
    that does not load (named and counted), and a label the model lacks."""
    import shutil

    manifest = json.load(open(os.path.join(tiny_corpus, "test.json")))
    folder = tmp_path / "my_clips"
    folder.mkdir()
    lines = ["path,label"]
    for utt, item in list(manifest.items())[:6]:
        shutil.copy(item["wav"], folder / f"{utt}.wav")
        lines.append(f"{utt}.wav,{item['emo']}")
    (folder / "broken.wav").write_bytes(b"RIFF broken")
    lines.append(f"broken.wav,{item['emo']}")
    csv_path = folder / "clips.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    result = run(
        [
            "-m",
            "speechbrain_emosllm.evaluate",
            "--model",
            exported,
            "--csv",
            str(csv_path),
            "--data-classes-only",
        ],
        merge_output=False,
    )
    assert result.returncode == 1, result.stderr[-2000:]  # a row failed
    report = json.loads(result.stdout)
    assert report["n"] == 6 and report["n_failed"] == 1
    assert report["failed"][0]["line"] == 8
    assert "broken.wav" in report["failed"][0]["path"]
    present = {line.split(",")[1] for line in lines[1:]}
    assert set(report["classes"]) == present
    assert len(report["confusion"]) == len(report["classes"])
    assert sum(map(sum, report["confusion"])) == 6
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert 0.0 <= report[key] <= 1.0

    csv_path.write_text("path,label\nbroken.wav,Joyful\n")
    result = run(
        [
            "-m",
            "speechbrain_emosllm.evaluate",
            "--model",
            exported,
            "--csv",
            str(csv_path),
        ],
        merge_output=False,
    )
    assert result.returncode == 2
    assert "line 2: label 'Joyful' is not a class" in result.stderr
