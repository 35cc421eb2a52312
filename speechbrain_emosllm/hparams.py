"""Layered HyperPyYAML loading: shared recipe file, presets, phase file.

HyperPyYAML's ``!include:`` nests the included file under one key, which
would push every hyperparameter of the shared recipe file out of reach of
``--key=value`` overrides. We layer whole files instead: a phase file names
its base with ``base_hparams``, the base names an encoder preset and an LLM
preset (``encoder_preset`` / ``llm_preset``: a name from the repository's
``hparams/`` folder or a path to a YAML file), and the layers are merged top
level key by key before HyperPyYAML resolves references and builds objects.
Command-line overrides apply last, as in every SpeechBrain recipe.

Authors
 * speechbrain-emosllm contributors 2026
"""

import os
from io import StringIO
from pathlib import Path

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml

PRESETS_FOLDER = Path(__file__).resolve().parents[1] / "hparams"
PRESET_KINDS = {"encoder_preset": "encoders", "llm_preset": "llms"}


def _read_yaml(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Hyperparameter file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return ruamel.yaml.YAML().load(f) or {}


def preset_path(key, value, relative_to="."):
    """Path of a preset given by name or by path.

    Arguments
    ---------
    key : str
        ``encoder_preset`` or ``llm_preset``.
    value : str
        A preset name (e.g. ``wavlm_large``) or a path to a YAML file.
    relative_to : str
        Folder that relative paths start from.

    Returns
    -------
    str

    Example
    -------
    >>> os.path.basename(preset_path("encoder_preset", "wavlm_large"))
    'wavlm_large.yaml'
    """
    if str(value).endswith((".yaml", ".yml")):
        return os.path.join(relative_to, value)
    path = PRESETS_FOLDER / PRESET_KINDS[key] / f"{value}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise FileNotFoundError(
            f"Unknown {key} '{value}'; available: {', '.join(names)} "
            "(or give a path to a .yaml file)."
        )
    return str(path)


def _read_base(path, seen=()):
    """A base file merged over its own base, if it names one.

    A recipe's base may add keys to the shared one (e.g. RAVDESS's actor
    splits over the model, loss and training keys of MSP-Podcast's).
    """
    if path in seen:
        raise ValueError(f"base_hparams loop through {path}")
    layer = _read_yaml(path)
    base = layer.pop("base_hparams", None)
    if base is None:
        return layer
    merged = _read_base(
        os.path.join(os.path.dirname(path), base), (*seen, path)
    )
    for key, value in layer.items():
        merged[key] = value
    return merged


def compose_hparams(phase_file, overrides=None):
    """Merges a phase file over its base and presets (no object built).

    Arguments
    ---------
    phase_file : str
        Path to a phase YAML with a ``base_hparams`` key.
    overrides : str or dict, optional
        Command-line style overrides; they may choose other presets.

    Returns
    -------
    (io.StringIO, dict)
        The merged YAML text and the overrides as a mapping, ready for
        ``hyperpyyaml.load_hyperpyyaml``.
    """
    yaml = ruamel.yaml.YAML()
    if isinstance(overrides, str):
        overrides = yaml.load(overrides) or {}
    overrides = dict(overrides or {})
    phase = _read_yaml(phase_file)
    folder = os.path.dirname(os.path.abspath(phase_file))
    if "base_hparams" not in phase:
        raise ValueError(f"{phase_file} has no 'base_hparams' key.")
    merged = _read_base(os.path.join(folder, phase.pop("base_hparams")))

    for key in PRESET_KINDS:
        name = overrides.get(key, phase.get(key, merged.get(key)))
        if name is None:
            continue
        preset = _read_yaml(preset_path(key, name, folder))
        for preset_key, value in preset.items():
            merged[preset_key] = value
    for key, value in phase.items():
        if key not in merged:
            raise KeyError(
                f"{phase_file}: '{key}' is not a hyperparameter of its base "
                "file or presets (typo?)."
            )
        merged[key] = value

    stream = StringIO()
    yaml.dump(merged, stream)
    stream.seek(0)
    return stream, overrides


def load_phase_hparams(phase_file, overrides=None):
    """Loads a phase's hyperparameters and builds its objects.

    Arguments
    ---------
    phase_file : str
        Path to a phase YAML (e.g. ``hparams/p1_asr.yaml``).
    overrides : str or dict, optional
        Overrides, as returned by ``speechbrain.parse_arguments``.

    Returns
    -------
    dict
        The loaded hyperparameters.
    """
    stream, overrides = compose_hparams(phase_file, overrides)
    return load_hyperpyyaml(stream, overrides)
