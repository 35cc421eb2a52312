"""The recipe end to end: P1 -> P2 -> P3 -> evaluation, as subprocesses."""

import json
import os

import pytest
import torch

from conftest import PHASES, RECIPE, recipe_overrides, run, train
from speechbrain_emosllm.modes import EMOTION_MODES


def best_checkpoint_files(phase_folder):
    save = os.path.join(phase_folder, "save")
    ckpts = [
        os.path.join(save, d) for d in os.listdir(save) if d.startswith("CKPT")
    ]
    return {d: sorted(os.listdir(d)) for d in ckpts}


def test_each_phase_starts_from_the_previous_best(curriculum):
    output, _, results = curriculum
    assert "starts from" not in results["p1_asr"].stdout
    for phase, previous in (
        ("p2_asr_lora", "p1_asr"),
        ("p3_joint", "p2_asr_lora"),
    ):
        log = results[phase].stdout
        assert f"Phase {phase} starts from" in log
        assert os.path.join(output, previous, "save", "CKPT") in log
    # P1 checkpoints hold no LoRA weights; P2 and P3 hold only LoRA ones.
    for phase in PHASES:
        for ckpt in best_checkpoint_files(os.path.join(output, phase)):
            lora = torch.load(os.path.join(ckpt, "speech_llm.ckpt"))
            if phase == "p1_asr":
                assert lora == {}
            else:
                assert lora and all("lora_" in key for key in lora)


def test_phase_two_trains_the_lora_weights(curriculum):
    """LoRA B matrices start at zero: phase 2 must have moved them."""
    output, _, _ = curriculum
    p2 = best_checkpoint_files(os.path.join(output, "p2_asr_lora"))
    lora = torch.load(os.path.join(sorted(p2)[-1], "speech_llm.ckpt"))
    assert any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)


def test_training_log_and_test_reports(curriculum):
    output, _, _ = curriculum
    log = open(os.path.join(output, "p3_joint", "train_log.txt")).read()
    assert log.count("epoch:") == 2 and "joint_oracle_macro_f1" in log
    # The ASR weight decreases from 1.0 over phase 3.
    weights = [
        float(line.split("asr_weight: ")[1].split(" ")[0])
        for line in log.splitlines()
        if "asr_weight" in line
    ]
    assert weights[0] > weights[1]
    # Paced by the training loader's length: the last step reaches 0.1.
    assert weights[-1] == pytest.approx(0.1)
    folder = os.path.join(output, "p3_joint", "test_test1")
    summary = json.load(open(os.path.join(folder, "summary.json")))
    for mode in EMOTION_MODES:
        report = json.load(open(os.path.join(folder, f"{mode}.json")))
        assert report["count"] == 8
        assert 0 <= report["accuracy"] <= 1
        assert len(report["confusion"]) == 4
        assert 0 <= report["invalid_rate"] <= 1
        assert os.path.getsize(os.path.join(folder, f"{mode}.png")) > 0
        assert summary[f"{mode}_acc"] == pytest.approx(report["accuracy"])
    assert "joint_generated_WER" in summary
    # A test scores the modes only: no teacher-forced (NaN) loss.
    assert "loss" not in summary
    assert "nan" not in json.dumps(summary).lower()
    assert os.path.isfile(os.path.join(folder, "joint_generated_wer.txt"))
    p1_summary = os.path.join(output, "p1_asr", "test_test1", "summary.json")
    assert "asr_WER" in json.load(open(p1_summary))


def test_test_only_reuses_the_best_checkpoint(curriculum):
    output, overrides, _ = curriculum
    result = train("p3_joint", [*overrides, "--test_only"])
    assert result.returncode == 0, result.stdout[-2000:]
    assert "Loading a checkpoint from" in result.stdout


def test_a_phase_without_its_predecessor_is_a_clear_error(
    tiny_models, tiny_corpus, tmp_path
):
    overrides = recipe_overrides(tiny_models, tiny_corpus, str(tmp_path))
    result = train("p2_asr_lora", overrides)
    assert result.returncode != 0
    assert "run the previous phase first" in result.stdout
    assert os.path.join(str(tmp_path), "p1_asr", "save") in result.stdout


def test_unknown_label_names_the_utterance(tiny_models, tiny_corpus, tmp_path):
    manifest = json.load(open(os.path.join(tiny_corpus, "train.json")))
    first = sorted(manifest)[0]
    manifest[first]["emo"] = "Bored"
    bad = tmp_path / "manifests"
    bad.mkdir()
    for name in ("valid.json", "test.json"):
        (bad / name).write_text(open(os.path.join(tiny_corpus, name)).read())
    (bad / "train.json").write_text(json.dumps(manifest))
    overrides = recipe_overrides(
        tiny_models, tiny_corpus, str(tmp_path), manifest_folder=str(bad)
    )
    result = train("p1_asr", overrides)
    assert result.returncode != 0
    assert f"Utterance {first}: emotion 'Bored'" in result.stdout


def test_an_unknown_sorting_is_a_clear_error(
    tiny_models, tiny_corpus, tmp_path
):
    overrides = recipe_overrides(
        tiny_models, tiny_corpus, str(tmp_path), sorting="shortest"
    )
    result = train("p1_asr", overrides)
    assert result.returncode != 0
    assert "Unknown sorting 'shortest'" in result.stdout


def test_a_typo_in_a_mode_or_metric_fails_before_any_work(
    tiny_models, tiny_corpus, tmp_path
):
    overrides = recipe_overrides(
        tiny_models,
        tiny_corpus,
        str(tmp_path),
        selection_mode="joint_orcale",
        previous_phase_folder=str(tmp_path / "nowhere"),
    )
    result = train("p3_joint", overrides)
    assert result.returncode != 0
    assert "selection_mode 'joint_orcale' is not one of" in result.stdout
    # Checked before the predecessor, the manifests and the cache.
    assert "run the previous phase first" not in result.stdout
    assert not os.path.exists(tmp_path / "feature_cache")


def test_a_typo_in_a_phase_file_is_reported(tmp_path):
    phase = tmp_path / "p9.yaml"
    phase.write_text(
        f"base_hparams: {RECIPE}/hparams/p3_joint.yaml\n"
        "phase: p9\nnumber_of_epoch: 3\n"
    )
    result = run(["-m", "speechbrain_emosllm.summary", str(phase)])
    assert result.returncode != 0
    assert "'number_of_epoch' is not a hyperparameter" in result.stdout


def test_parameter_summary_of_the_paper_configuration():
    result = run(
        ["-m", "speechbrain_emosllm.summary", "hparams/p3_joint.yaml"],
        merge_output=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    trainable, total = (int(part.split("=")[1]) for part in last.split())
    assert last == f"trainable={trainable} total={total}"
    assert abs(trainable - 12.5e6) / 12.5e6 < 0.10
    assert 3.4e9 < total < 3.7e9
    p1 = run(
        ["-m", "speechbrain_emosllm.summary", "hparams/p1_asr.yaml"],
        merge_output=False,
    )
    p1_trainable = int(p1.stdout.split("trainable=")[1].split()[0])
    assert p1_trainable < trainable  # no LoRA in phase 1


def test_cached_features_give_the_same_losses_as_online_encoding(
    tiny_models, tiny_corpus, tmp_path
):
    logs = {}
    for cache in (True, False):
        output = str(tmp_path / f"cache_{cache}")
        overrides = recipe_overrides(
            tiny_models,
            tiny_corpus,
            output,
            qpmapper_dim=32,
            qpmapper_ffn=32,
            qpmapper_heads=4,
            batch_size=1,
            test_batch_size=1,
            feature_cache=cache,
            feature_cache_dtype="float32",
        )
        result = train("p1_asr", overrides)
        assert result.returncode == 0, result.stdout[-2000:]
        logs[cache] = open(
            os.path.join(output, "p1_asr", "train_log.txt")
        ).read()
        assert os.path.isdir(os.path.join(output, "feature_cache")) == cache
    assert "train loss" in logs[True]
    # Seconds go to phase_seconds.json, not the log: the logs are equal.
    assert "seconds" not in logs[True]
    assert logs[True] == logs[False]
