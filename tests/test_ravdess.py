"""RAVDESS recipe: preparation, splits, label sets, probe and a tiny phase.

Fabricated releases (48 kHz, some stereo) test the layout rules; a few real
clips of ``../shared/data/ravdess`` (present in CI, absent from a user's
clone, where those tests skip) test the real files.
"""

import json
import os
import sys

import pytest
import torch

from conftest import ROOT, run
from speechbrain_emosllm.modes import EMOTION_MODES
from speechbrain_emosllm.testing import write_tone_clips

RAVDESS_RECIPE = os.path.join(ROOT, "recipes", "RAVDESS", "emosllm")
sys.path.insert(0, RAVDESS_RECIPE)
from ravdess_prepare import prepare_ravdess  # noqa: E402

from speechbrain_emosllm.labels import ravdess_labels as label_names  # noqa: E402

SHARED = os.path.join(ROOT, "..", "shared", "data", "ravdess")
needs_shared = pytest.mark.skipif(
    not os.path.isdir(os.path.join(SHARED, "Actor_01")),
    reason="real RAVDESS clips (../shared/data/ravdess) are not in this "
    "checkout: CI has them, a user's clone has not",
)


def fabricate(root, actors, emotions=("01", "03", "05"), rate=48000):
    """A release-shaped folder: 2 statements per emotion and actor."""
    for actor in actors:
        folder = os.path.join(root, f"Actor_{actor:02d}")
        specs = []
        for k, emotion in enumerate(emotions):
            for statement in ("01", "02"):
                name = f"03-01-{emotion}-01-{statement}-01-{actor:02d}"
                specs.append((name, 0.3, k))
        write_tone_clips(folder, specs, sample_rate=rate)
    return root


def load(folder, split):
    with open(os.path.join(folder, f"{split}.json"), encoding="utf-8") as f:
        return json.load(f)


def test_official_layout_48k_manifests(tmp_path):
    data = fabricate(str(tmp_path / "data"), range(1, 6))
    (tmp_path / "data" / "Actor_01" / "notes.txt").write_text("x")
    counts = prepare_ravdess(data, str(tmp_path / "m"), "4", "5", "ravdess8")
    assert counts == {"train": 18, "valid": 6, "test": 6}
    test = load(str(tmp_path / "m"), "test")
    item = test["03-01-05-01-02-01-05"]
    assert item["emo"] == "Angry"
    assert item["spk_id"] == "05"
    assert item["intensity"] == "normal"
    assert item["wrd"] == "Dogs are sitting by the door"
    assert item["duration"] == pytest.approx(0.3, abs=0.01)
    # Unchanged inputs and options: nothing is rewritten.
    assert prepare_ravdess(data, str(tmp_path / "m"), "4", "5") == {}


def test_label_sets_map_and_drop_classes(tmp_path):
    data = fabricate(str(tmp_path / "d"), [1, 2, 3], ("02", "06", "07", "08"))
    prepare_ravdess(data, str(tmp_path / "msp"), [2], [3], "msp")
    emotions = {i["emo"] for i in load(str(tmp_path / "msp"), "train").values()}
    assert emotions == {"Neutral", "Fear", "Disgust", "Surprise"}
    assert label_names("msp")[:4] == ["Neutral", "Happy", "Sad", "Angry"]
    with pytest.raises(ValueError, match="Split train has no clips"):
        prepare_ravdess(data, str(tmp_path / "n"), [2], [3], "nhsa4")
    with pytest.raises(ValueError, match="Unknown label_set 'ekman'"):
        prepare_ravdess(data, str(tmp_path / "n"), [2], [3], "ekman")


@pytest.mark.parametrize(
    "valid, test, message",
    [
        ("2", "2,3", r"Actors \[2\] are in both"),
        ("2", "9", r"test_actors \[9\] have no clips here"),
        ("", "3", "valid_actors is empty"),
        ("1,2", "3", "No actor is left for training"),
    ],
)
def test_split_errors_are_clear(tmp_path, valid, test, message):
    data = fabricate(str(tmp_path / "d"), [1, 2, 3])
    with pytest.raises(ValueError, match=message):
        prepare_ravdess(data, str(tmp_path / "m"), valid, test)
    assert not os.path.exists(tmp_path / "m" / "train.json")


def test_actor_folder_mismatch_and_missing_layout(tmp_path):
    data = fabricate(str(tmp_path / "d"), [1, 2, 3])
    os.rename(
        os.path.join(data, "Actor_01", "03-01-01-01-01-01-01.wav"),
        os.path.join(data, "Actor_01", "03-01-01-01-01-01-07.wav"),
    )
    with pytest.raises(ValueError, match="actor 07 in the file name"):
        prepare_ravdess(data, str(tmp_path / "m"), [2], [3])
    with pytest.raises(FileNotFoundError, match="No Actor_XX/ folders"):
        prepare_ravdess(str(tmp_path), str(tmp_path / "m"), [2], [3])


def test_changed_audio_or_truncated_manifest_is_redone(tmp_path):
    data = fabricate(str(tmp_path / "d"), [1, 2, 3])
    out = str(tmp_path / "m")
    prepare_ravdess(data, out, [2], [3])
    with open(os.path.join(out, "valid.json"), "w") as f:
        f.write('{"03-01')  # a run killed while writing
    assert prepare_ravdess(data, out, [2], [3])["valid"] == 6
    write_tone_clips(
        os.path.join(data, "Actor_01"), [("03-01-01-01-01-01-01", 0.6, 0)]
    )
    assert prepare_ravdess(data, out, [2], [3]) != {}
    item = load(out, "train")["03-01-01-01-01-01-01"]
    assert item["duration"] == pytest.approx(0.6, abs=0.01)


@needs_shared
def test_real_clips_prepare_with_default_split_error(tmp_path):
    """The shared copy has actors 01-18: the default test actors are absent."""
    with pytest.raises(ValueError, match=r"test_actors \[19, 20"):
        prepare_ravdess(SHARED, str(tmp_path / "m"))
    counts = prepare_ravdess(SHARED, str(tmp_path / "m"), "13,14", "15-18")
    assert counts == {"train": 720, "valid": 120, "test": 240}
    train = load(str(tmp_path / "m"), "train").values()
    assert {i["spk_id"] for i in train} == {f"{a:02d}" for a in range(1, 13)}
    assert {i["wrd"] for i in train} == {
        "Kids are talking by the door",
        "Dogs are sitting by the door",
    }


def few_real_clips(root, actors, per_actor=8):
    """Links to a few real clips per actor, in the release layout."""
    for actor in actors:
        source = os.path.join(SHARED, f"Actor_{actor:02d}")
        target = os.path.join(root, f"Actor_{actor:02d}")
        os.makedirs(target)
        names = sorted(os.listdir(source))
        # Neutral, happy, sad and angry: two clips of each.
        chosen = [n for n in names if n[6:8] in ("01", "03", "04", "05")]
        for name in chosen[::4][:per_actor]:
            os.symlink(os.path.join(source, name), os.path.join(target, name))
    return root


@needs_shared
def test_probe_and_tiny_phase_on_real_clips(tiny_models, tmp_path):
    from speechbrain_emosllm.testing import make_tiny_whisper

    # Three training actors (1, 2, 5): the token is cross-validated.
    data = few_real_clips(str(tmp_path / "data"), [1, 2, 3, 4, 5])
    whisper = make_tiny_whisper(str(tmp_path / "whisper"), num_layers=2)
    common = [
        f"--data_folder={data}",
        f"--experiment_folder={tmp_path / 'out'}",
        "--valid_actors=3",
        "--test_actors=4",
        "--label_set=nhsa4",
        "--encoder_preset=whisper_tiny_en",
        f"--encoder_source={whisper}",
        "--encoder_dim=32",
        "--encoder_hidden_states=3",
        "--llm_preset=smollm2-135m-instruct",
        f"--llm_source={tiny_models['llm']}",
        "--llm_dim=64",
        "--n_queries=4",
        "--qpmapper_dim=32",
        "--qpmapper_ffn=32",
        "--qpmapper_heads=4",
        "--batch_size=4",
        "--test_batch_size=4",
        "--num_workers=0",
        "--max_new_tokens=8",
    ]
    probe = run(
        ["linear_probe.py", "hparams/ser.yaml", *common], cwd=RAVDESS_RECIPE
    )
    assert probe.returncode == 0, probe.stdout[-3000:]
    results = json.load(
        open(tmp_path / "out" / "linear_probe" / "probe_results.json")
    )
    assert set(results) == {"linear_probe", "weighted_layers_probe"}
    assert len(results["weighted_layers_probe"]["layer_weights"]) == 3
    assert 0.0 <= results["linear_probe"]["macro_f1"] <= 1.0

    phase = run(
        [
            "train.py",
            "hparams/ser.yaml",
            *common,
            "--previous_phase_folder=null",
            "--layer_weighting=True",
            "--number_of_epochs=1",
            "--test_ablations=[token_masked,queries_masked,no_phase_training]",
        ],
        cwd=RAVDESS_RECIPE,
    )
    assert phase.returncode == 0, phase.stdout[-3000:]
    summary = json.load(
        open(tmp_path / "out" / "ser" / "test_test" / "summary.json")
    )
    for mode in ("ser_only", "prompt_hint", "joint_oracle"):
        assert 0.0 <= summary[f"{mode}_acc"] <= 1.0
    # The token's own decisions are scored next to the LLM's.
    assert 0.0 <= summary["utterance_token_macro_f1"] <= 1.0
    # Each ablation is a ser_only test of the same checkpoint.
    for ablation in ("token_masked", "queries_masked", "no_phase_training"):
        folder = tmp_path / "out" / "ser" / f"test_test_{ablation}"
        ablated = json.load(open(folder / "summary.json"))
        assert 0.0 <= ablated["ser_only_acc"] <= 1.0
        assert "prompt_hint_acc" not in ablated
        answers = json.load(open(folder / "ser_only_predictions.json"))
        assert len(answers) == len(os.listdir(os.path.join(data, "Actor_04")))
    # The exported model keeps the recipe's classes and its mapper (every
    # encoder layer, utterance token) and classifies a real clip.
    from speechbrain_emosllm.export import export_model
    from speechbrain_emosllm.inference import EmotionLLM

    model_folder = str(tmp_path / "model")
    export_model(str(tmp_path / "out" / "ser"), model_folder)
    assert json.load(open(os.path.join(model_folder, "labels.json"))) == (
        label_names("nhsa4")
    )
    model = EmotionLLM.from_hparams(
        source=model_folder, savedir=str(tmp_path / "savedir")
    )
    clip = os.path.join(data, "Actor_04", os.listdir(data + "/Actor_04")[0])
    result = model.predict_file(clip, mode="ser_only")
    assert result["label"] in label_names("nhsa4")
    token = model.mods.qpmapper.utterance_token
    # The utterance token was fitted as a probe before training and stayed
    # frozen: the exported mapper has the layer weighting the fit chose.
    fit = json.load(open(tmp_path / "out" / "ser" / "utterance_token_fit.json"))
    assert set(fit) == {
        "layer_choice",
        "layer_weights",
        "l2",
        "valid_macro_f1",
        "selected_on",
        "cv_macro_f1",
    }
    # Chosen on the training actors (three or more), no test actor.
    assert fit["selected_on"] == "speaker_cv"
    exported = model.mods.qpmapper.layer_sum.layer_weights().tolist()
    assert exported == pytest.approx(fit["layer_weights"], abs=2e-3)
    # Its class count follows the label set (nhsa4: 4 classes).
    assert token.head.classifier.out_features == 4

    # The probe and the phase share one all-layers cache: each clip once.
    cache = tmp_path / "out" / "feature_cache"
    (folder,) = os.listdir(cache)
    frames = torch.load(next((cache / folder).iterdir()))
    assert frames.shape[1:] == (3, 32)
    clips = sum(len(files) for _, _, files in os.walk(data))
    assert len(os.listdir(cache / folder)) == clips


def quick_ravdess_demo(data, output, *options):
    """Runs the quick demo on RAVDESS clips in ``data``."""
    command = [
        "-m",
        "speechbrain_emosllm.demo",
        "--quick",
        "--corpus",
        "ravdess",
        "--ravdess_folder",
        str(data),
        *options,
        "--output",
        str(output),
    ]
    return run(command, cwd=ROOT)


@needs_shared
def test_quick_demo_on_real_clips_writes_the_results(tmp_path):
    data = few_real_clips(str(tmp_path / "data"), [1, 2, 3, 4])
    output = tmp_path / "demo"
    result = quick_ravdess_demo(
        data,
        output,
        *("--valid_actors", "3", "--test_actors", "4"),
        *("--label_set", "nhsa4"),
    )
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.load(open(output / "ravdess_results.json"))
    assert report["label_set"] == "nhsa4"
    assert report["test_actors"] == [4]
    assert report["n_test"] == len(os.listdir(os.path.join(data, "Actor_04")))
    assert set(report["modes"]) == {
        "ser_only",
        "prompt_hint",
        "joint_oracle",
        "joint_generated",
    }
    assert set(report["baselines"]) == {
        "linear_probe",
        "weighted_layers_probe",
    }
    for entry in report["modes"].values():
        assert os.path.isfile(entry["confusion_png"])
    assert report["seconds"] > 0 and report["peak_gb"] > 0
    # It starts from the eSpeak demo's own P2 (one mapper for both
    # corpora), and runs no eSpeak phase 3.
    assert (output / "p2_asr_lora" / "demo_phase_done").is_file()
    assert not (output / "p3_joint").exists()


@needs_shared
def test_quick_fold_protocol_writes_every_fold_and_the_summary(tmp_path):
    """Two folds of actor groups: each trains, probes and tests; the
    transcript modes run on the first fold only; one feature cache; a
    paired bootstrap of ser_only minus the probe."""
    data = few_real_clips(str(tmp_path / "data"), [1, 2, 3, 4, 5, 6])
    output = tmp_path / "demo"
    result = quick_ravdess_demo(
        data, output, "--label_set", "nhsa4", "--folds", "1,2;3,4"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.load(open(output / "ravdess_folds.json"))
    assert [f["test_actors"] for f in report["folds"]] == [[1, 2], [3, 4]]
    # The fixed rule: the highest-numbered male and female training actor.
    assert [f["valid_actors"] for f in report["folds"]] == [[5, 6], [5, 6]]
    first, second = report["folds"]
    assert set(first["modes"]) == set(EMOTION_MODES)
    assert set(second["modes"]) == {"ser_only"}

    def clips(*actors):
        return sum(len(os.listdir(f"{data}/Actor_{a:02d}")) for a in actors)

    assert first["n_test"] == clips(1, 2) and second["n_test"] == clips(3, 4)
    for fold in report["folds"]:
        # The token's own decision is a baseline; ser_only mostly copies it.
        assert set(fold["baselines"]) == {
            "linear_probe",
            "weighted_layers_probe",
            "utterance_token",
        }
        assert 0.0 <= fold["agreement_with_token"] <= 1.0
        # Fewer than three training actors: the token's choices on valid.
        assert fold["token_fit"]["selected_on"] == "valid"
        assert fold["token_fit"]["layer_choice"] in {
            "mapper",
            "last_layer",
            "weighted_layers_probe",
        }
        spent = fold["seconds"]
        assert spent["probes"] > 0 and spent["phase"] > 0
        # Where the phase's time went: its steps, each epoch, each test.
        assert list(spent["steps"]) == [
            "encoding",
            "token_fit",
            "untrained_ablation",
            "training",
            "test",
            "output_ablations",
        ]
        assert sum(spent["steps"].values()) < spent["phase"]
        stages = [(s["stage"], s.get("test_set")) for s in spent["stages"]]
        assert stages == [
            ("test", "test_no_phase_training"),
            ("train", None),
            ("valid", None),
            ("test", "test"),
            ("test", "test_token_masked"),
            ("test", "test_queries_masked"),
        ]
        tested = spent["stages"][3]["modes"]
        assert set(tested) == set(fold["modes"]) and min(tested.values()) > 0
        assert set(fold["ablations"]) == {
            "token_masked",
            "queries_masked",
            "no_phase_training",
        }
        rows = [fold["modes"], fold["baselines"], fold["ablations"]]
        for row in [value for group in rows for value in group.values()]:
            assert set(row) == {"accuracy", "balanced_accuracy", "macro_f1"}
    assert report["summary"]["ser_only"]["folds"] == 2
    assert report["summary"]["joint_generated"]["folds"] == 1
    assert report["summary"]["no_phase_training"]["folds"] == 2
    assert "ser_only_minus_weighted_layers_probe" in report["bootstrap"]
    boot = report["bootstrap"]["ser_only_minus_linear_probe"]
    low, high = boot["ci95"]
    assert boot["draws"] == 1000 and low <= high
    cache = output / "ravdess_folds" / "feature_cache"
    assert len(os.listdir(cache)) == 1  # one key: each clip encoded once

    # Stacking: a fold of its own, beside (not over) the plain one; each
    # training clip has an out-of-fold posterior.
    result = quick_ravdess_demo(
        data,
        output,
        "--label_set",
        "nhsa4",
        "--folds",
        "1,2",
        "--stacked_token",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    stacked = json.load(open(output / "ravdess_folds_stacked.json"))
    assert stacked["stacked_token"] == {
        "out_of_fold_token": True,
        "token_dropout": 0.3,
    }
    assert json.load(open(output / "ravdess_folds.json")) == report
    (fold,) = stacked["folds"]
    folder = output / "ravdess_folds" / f"{fold['fold']}_stacked" / "ser"
    posteriors = json.load(open(folder / "out_of_fold_posteriors.json"))
    assert len(posteriors) == clips(3, 4)  # actors 5 and 6 are valid
    assert all(abs(sum(p) - 1) < 1e-4 for p in posteriors.values())
    assert len(os.listdir(cache)) == 1


def test_fold_protocol_names_missing_test_actors_before_training(tmp_path):
    data = tmp_path / "data"
    for actor in (1, 2):
        (data / f"Actor_{actor:02d}").mkdir(parents=True)
    result = quick_ravdess_demo(data, tmp_path / "out", "--folds", "emobox:1")
    assert result.returncode == 2
    assert "fold emobox1: test actors [11, 20, 21] are not in" in result.stdout
    assert not (tmp_path / "out").exists()
