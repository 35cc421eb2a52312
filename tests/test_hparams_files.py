"""The shipped phase files: flat, loadable, consistent, fully used.

SpeechBrain checks its recipes' YAML files against their scripts (every
declared key is used, every ``self.modules.X`` is declared); the two
checks below apply the same rules to train.py plus this package.
"""

import glob
import io
import os
import re

import pytest
import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.run_opts import RunOptions

from speechbrain_emosllm.hparams import PRESET_KINDS, PRESETS_FOLDER

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MSP = os.path.join(ROOT, "recipes", "MSP-Podcast", "emosllm")
RAVDESS = os.path.join(ROOT, "recipes", "RAVDESS", "emosllm")
PHASE_FILES = {
    "p1_asr": (MSP, "p1_asr.yaml"),
    "p2_asr_lora": (MSP, "p2_asr_lora.yaml"),
    "p3_joint": (MSP, "p3_joint.yaml"),
    "ravdess_ser": (RAVDESS, "ser.yaml"),
}
# What a phase may set differently from the others; everything else they
# both have must be identical.
PHASE_KEYS = {
    "phase",
    "task",
    "previous_phase_folder",
    "lora_config",
    "asr_loss_weight_final",
    "valid_modes",
    "test_modes",
    "selection_metric",
    "selection_mode",
}
RAVDESS_KEYS = {
    "ser_task_share",
    "experiment_folder",
    "data_folder",
    "test_jsons",
    "lr",
    "emotion_loss_weight",
    "layer_weighting",
    "qpmapper_output_norm",
    "utterance_token",
}


def path_of(name):
    folder, file = PHASE_FILES[name]
    return os.path.join(folder, "hparams", file)


def read(path):
    with open(path, encoding="utf-8") as f:
        return ruamel.yaml.YAML().load(f)


def dumped(value):
    """A value as YAML text without its comments (they may differ)."""
    stream = io.StringIO()
    ruamel.yaml.YAML().dump({"v": value}, stream)
    lines = (
        line.split("#")[0].rstrip() for line in stream.getvalue().split("\n")
    )
    return "\n".join(line for line in lines if line)


def scripts_text(recipe):
    files = [os.path.join(recipe, "train.py")]
    files += glob.glob(os.path.join(ROOT, "speechbrain_emosllm", "*.py"))
    return "\n".join(open(f, encoding="utf-8").read() for f in files)


@pytest.mark.parametrize("name", PHASE_FILES)
def test_phase_file_is_flat_and_loads_with_plain_hyperpyyaml(
    name, tiny_models, tmp_path
):
    path = path_of(name)
    assert "base_hparams" not in read(path)
    overrides = {
        "data_folder": str(tmp_path),
        "experiment_folder": str(tmp_path),
        "previous_phase_folder": None,
        "encoder_source": tiny_models["encoder"],
        "encoder_dim": 32,
        "llm_source": tiny_models["llm"],
        "llm_dim": 64,
    }
    with open(path, encoding="utf-8") as f:
        hparams = load_hyperpyyaml(f, overrides)
    assert set(hparams["modules"]) == {"encoder", "qpmapper", "speech_llm"}
    assert hparams["qpmapper"].output_projection.out_features == 64


@pytest.mark.parametrize("other", ["p2_asr_lora", "p3_joint", "ravdess_ser"])
def test_shared_keys_stay_identical(other):
    first, second = read(path_of("p1_asr")), read(path_of(other))
    allowed = PHASE_KEYS | (RAVDESS_KEYS if other == "ravdess_ser" else set())
    differing = [
        key
        for key in set(first) & set(second)
        if key not in allowed and dumped(first[key]) != dumped(second[key])
    ]
    assert differing == []


@pytest.mark.parametrize("name", PHASE_FILES)
def test_inlined_model_keys_are_those_of_the_named_presets(name):
    hparams = read(path_of(name))
    for key, kind in PRESET_KINDS.items():
        preset = read(PRESETS_FOLDER / kind / f"{hparams[key]}.yaml")
        for preset_key, value in preset.items():
            assert dumped(hparams[preset_key]) == dumped(value), preset_key


def test_presets_of_a_kind_set_the_same_keys():
    for kind in PRESET_KINDS.values():
        key_sets = {
            os.path.basename(path): set(read(path))
            for path in glob.glob(str(PRESETS_FOLDER / kind / "*.yaml"))
        }
        assert len(key_sets) >= 3
        assert len({frozenset(keys) for keys in key_sets.values()}) == 1


@pytest.mark.parametrize("name", PHASE_FILES)
def test_every_key_is_used_and_every_module_is_declared(name):
    path = path_of(name)
    text = open(path, encoding="utf-8").read()
    scripts = scripts_text(PHASE_FILES[name][0])
    unused = []
    for key in read(path):
        if key.startswith("__") or key in RunOptions().as_dict():
            continue  # applied while loading / a SpeechBrain run option
        referenced = re.search(rf"<{key}[\[>]", text)
        read_by_code = (
            f'["{key}"]' in scripts
            or f'hparams.get("{key}"' in scripts
            or re.search(rf"(hparams|modules)\.{key}\b", scripts)
        )
        if not (referenced or read_by_code):
            unused.append(key)
    assert unused == [], f"{path}: declared but never used"
    used_modules = set(re.findall(r"self\.modules\.(\w+)", scripts))
    used_modules -= {"parameters", "keys", "eval", "train"}
    assert used_modules <= set(read(path)["modules"])
