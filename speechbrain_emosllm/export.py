"""Exports a finished phase-3 folder as a self-contained inference model.

    python -m speechbrain_emosllm.export <phase folder> <model folder>
        [--absolute-base-paths]

The model folder holds ``hyperparams.yaml`` (for
``speechbrain_emosllm.inference.EmotionLLM.from_hparams``), the QPMapper
weights (``qpmapper.ckpt``), the LoRA adapter in PEFT's format
(``lora_adapter/``: ``peft.PeftModel.from_pretrained(base_llm, <it>)``
loads it), ``labels.json``, and the encoder and base LLM: Hub ids as they
are, local model folders copied into ``base_models/`` (hard links where
the file system allows) so that the folder names no path of the training
machine; ``--absolute-base-paths`` refers to the local folders instead.
The training folder is only read.

Authors
 * speechbrain-emosllm contributors 2026
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import ruamel.yaml
import torch
from ruamel.yaml.comments import TaggedScalar

from speechbrain_emosllm.checkpoints import find_best_checkpoint
from speechbrain_emosllm.hparams import PRESETS_FOLDER
from speechbrain_emosllm.labels import LABELS_FILE, emotion_labels

ADAPTER_DIR = "lora_adapter"

BASE_MODELS_DIR = "base_models"

# The model's HyperPyYAML template (package data): export fills its
# !PLACEHOLDER keys.
INFERENCE_TEMPLATE = PRESETS_FOLDER / "inference.yaml"


def _local_folder(source, folder):
    """The local folder a source names (relative to ``folder``), or None."""
    candidate = os.path.join(folder, str(source))
    return os.path.abspath(candidate) if os.path.isdir(candidate) else None


def _link_or_copy(source, destination):
    try:
        os.link(source, destination)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, destination)


def base_model_reference(source, phase_folder, model_folder, name, absolute):
    """How the model folder names a base model.

    Arguments
    ---------
    source : str
        ``encoder_source`` / ``llm_source`` of the trained phase.
    phase_folder : str
        The phase's folder (relative sources start there).
    model_folder : str
        The model folder being written.
    name : str
        Sub-folder of ``base_models/`` for a copied local model.
    absolute : bool
        Refer to a local folder by its absolute path instead of copying.

    Returns
    -------
    str
        YAML text: a Hub id, an absolute path, or a ``!ref`` to the copy.

    Example
    -------
    >>> base_model_reference("org/model", ".", "out", "llm", False)
    'org/model'
    """
    local = _local_folder(source, phase_folder)
    if local is None:
        return str(source)
    if absolute:
        return local
    shutil.copytree(
        local,
        os.path.join(model_folder, BASE_MODELS_DIR, name),
        copy_function=_link_or_copy,
    )
    return f"!ref <model_folder>/{BASE_MODELS_DIR}/{name}"


MODEL_NOTE = """# EmoSLLM model folder

Trained weights: the QPMapper (`qpmapper.ckpt`) and the LoRA adapter
(`lora_adapter/`, PEFT format). The base models are loaded from the sources
named in `hyperparams.yaml` (Hub ids, or copies of local folders in
`base_models/`):

- frozen speech encoder: {encoder}
- base LLM: {llm}

Classes: {labels}. Exported from {phase}.

`hyperparams.yaml` is HyperPyYAML: loading it builds (and can run) the
Python objects it names, so load model folders only from people you trust.
"""


def _model_name(source, phase_folder):
    """A Hub id, or a local folder's name and where its copy is."""
    if _local_folder(source, phase_folder) is None:
        return str(source)
    return f"{os.path.basename(str(source))} (a local folder, copied here)"


def phase_labels(phase_folder, tree):
    """The classes a phase was trained on, in order.

    ``labels.json`` is written by every recipe's phase; folders from before
    it existed fall back to MSP-Podcast's ``n_classes``.

    Arguments
    ---------
    phase_folder : str
        Output folder of the phase.
    tree : dict
        Its ``hyperparams.yaml``.

    Returns
    -------
    list of str
    """
    path = os.path.join(phase_folder, LABELS_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return emotion_labels(tree["n_classes"])


def export_model(phase_folder, model_folder, absolute_base_paths=False):
    """Writes the inference model folder of a finished phase.

    Arguments
    ---------
    phase_folder : str
        Output folder of a phase (``.../p3_joint``) with ``hyperparams.yaml``
        and ``save/``.
    model_folder : str
        New folder to write; must not exist yet or be empty.
    absolute_base_paths : bool
        Refer to local base models by absolute path (no copy).

    Returns
    -------
    str
        ``model_folder``.
    """
    if os.path.exists(model_folder) and not os.path.isdir(model_folder):
        raise FileExistsError(
            f"{model_folder} is a file, not a folder; choose a new folder "
            "(nothing was overwritten)."
        )
    if os.path.isdir(model_folder) and os.listdir(model_folder):
        raise FileExistsError(
            f"{model_folder} is not empty; choose a new "
            "folder (nothing was overwritten)."
        )
    # Written in a staging folder beside the target and renamed into place
    # when complete: a failed export leaves nothing that looks like a model
    # and does not block the retry. The staging folder's name holds the
    # process id, so that one left by a killed export is recognised later.
    model_folder = os.path.abspath(model_folder)
    parent = os.path.dirname(model_folder)
    os.makedirs(parent, exist_ok=True)
    prefix = f".{os.path.basename(model_folder)}.partial-"
    remove_stale_partials(parent, prefix)
    staging = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)
    try:
        # mkdtemp makes a private folder; the model gets the user's umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        write_model_folder(phase_folder, staging, absolute_base_paths)
        if os.path.isdir(model_folder):
            os.rmdir(model_folder)  # empty, checked above
        os.rename(staging, model_folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return model_folder


def remove_stale_partials(parent, prefix):
    """Removes staging folders of exports whose process is gone.

    Arguments
    ---------
    parent : str
        The model folder's parent.
    prefix : str
        The staging folders' name prefix (``.<name>.partial-``).

    Returns
    -------
    list of str
        The folders removed (each is also named on stderr).

    Example
    -------
    >>> remove_stale_partials("/no/such/folder", ".m.partial-")
    []
    """
    removed = []
    if not os.path.isdir(parent):
        return removed
    for name in sorted(os.listdir(parent)):
        pid = name[len(prefix) :].split("-")[0]
        if not name.startswith(prefix) or not pid.isdigit():
            continue
        if _process_alive(int(pid)):
            continue
        path = os.path.join(parent, name)
        shutil.rmtree(path, ignore_errors=True)
        print(
            f"export: removed {path}, left by an export that did not finish",
            file=sys.stderr,
        )
        removed.append(path)
    return removed


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _without_comments(node):
    """A ruamel node without the comments of the phase's YAML.

    They describe keys of the training file, not of the model folder.
    """
    if hasattr(node, "ca"):
        node.ca.items.clear()
        node.ca.comment = None
        node.ca.end = []
    children = node.values() if hasattr(node, "values") else []
    if isinstance(node, list):
        children = node
    for child in children:
        _without_comments(child)
    return node


def _as_yaml(value):
    """A reference (text starting with !ref) as a tagged scalar."""
    if isinstance(value, str) and value.startswith("!ref "):
        return TaggedScalar(value.removeprefix("!ref "), tag="!ref")
    return value


def write_inference_yaml(tree, labels, sources, path, note=""):
    """Fills the inference template's placeholders and writes it.

    Arguments
    ---------
    tree : dict
        The phase's resolved ``hyperparams.yaml`` (ruamel round-trip).
    labels : list of str
        The classes.
    sources : dict
        ``encoder`` and ``llm``: how the model folder names them (see
        ``base_model_reference``).
    path : str
        Where to write.
    note : str
        A comment line for the top of the file.
    """
    yaml = ruamel.yaml.YAML()
    with open(INFERENCE_TEMPLATE, encoding="utf-8") as f:
        model = yaml.load(f)
    encoder = tree["encoder"]
    # The lobe itself, or the one LayerFrames wraps.
    lobe = encoder["lobe"] if "lobe" in encoder else encoder
    lobe["source"] = TaggedScalar("<encoder_source>", tag="!ref")
    lobe["save_path"] = TaggedScalar("<hub_cache>", tag="!ref")
    # Keys whose value is not the phase key of the same name.
    filled = {
        "labels": labels,
        "max_audio_seconds": tree["max_train_seconds"],
        "encoder_source": _as_yaml(sources["encoder"]),
        "llm_source": _as_yaml(sources["llm"]),
        "encoder": _without_comments(encoder),
        "qpmapper": _without_comments(tree["qpmapper"]),
    }
    for key, value in model.items():
        placeholder = getattr(value, "tag", None)
        if (
            key == "model_folder"
            or getattr(placeholder, "value", placeholder) != "!PLACEHOLDER"
        ):
            continue
        model[key] = filled[key] if key in filled else tree[key]
    with open(path, "w", encoding="utf-8") as f:
        if note:
            f.write(f"# {note}\n")
        yaml.dump(model, f)


def write_model_folder(phase_folder, model_folder, absolute_base_paths=False):
    """Writes the model files of a finished phase into an existing folder.

    Arguments
    ---------
    phase_folder : str
        Output folder of a phase with ``hyperparams.yaml`` and ``save/``.
    model_folder : str
        An empty folder.
    absolute_base_paths : bool
        Refer to local base models by absolute path (no copy).
    """
    from safetensors.torch import save_file

    hparams_path = os.path.join(phase_folder, "hyperparams.yaml")
    if not os.path.isfile(hparams_path):
        raise FileNotFoundError(
            f"{hparams_path} not found: is {phase_folder} the output folder "
            "of a training phase?"
        )
    checkpoint = find_best_checkpoint(phase_folder)
    yaml = ruamel.yaml.YAML()
    with open(hparams_path, encoding="utf-8") as f:
        tree = yaml.load(f)

    labels = phase_labels(phase_folder, tree)
    sources = {
        name: base_model_reference(
            tree[key], phase_folder, model_folder, name, absolute_base_paths
        )
        for name, key in (("encoder", "encoder_source"), ("llm", "llm_source"))
    }
    write_inference_yaml(
        tree,
        labels,
        sources,
        os.path.join(model_folder, "hyperparams.yaml"),
        note=f"Exported from the phase {os.path.basename(phase_folder)} "
        f"(checkpoint {os.path.basename(checkpoint.path)}).",
    )
    shutil.copyfile(
        checkpoint.paramfiles["qpmapper"],
        os.path.join(model_folder, "qpmapper.ckpt"),
    )

    lora_state = torch.load(
        checkpoint.paramfiles["speech_llm"], map_location="cpu"
    )
    if not lora_state:
        raise ValueError(
            f"{checkpoint.path} has no LoRA weights: export a "
            "phase trained with LoRA (P2 or P3)."
        )
    lora = tree["lora_config"]
    adapter_folder = os.path.join(model_folder, ADAPTER_DIR)
    os.makedirs(adapter_folder)
    from peft import LoraConfig

    config = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["lora_alpha"],
        lora_dropout=lora["lora_dropout"],
        target_modules=list(lora["target_modules"]),
        task_type="CAUSAL_LM",
        # Informative only (the adapter is loaded onto a given model): the
        # Hub id, or the local folder's name.
        base_model_name_or_path=os.path.basename(str(tree["llm_source"]))
        if _local_folder(tree["llm_source"], phase_folder)
        else str(tree["llm_source"]),
    )
    config.save_pretrained(adapter_folder)
    save_file(
        {k: v.contiguous() for k, v in lora_state.items()},
        os.path.join(adapter_folder, "adapter_model.safetensors"),
    )
    with open(
        os.path.join(model_folder, LABELS_FILE), "w", encoding="utf-8"
    ) as f:
        json.dump(labels, f)
    with open(
        os.path.join(model_folder, "README.md"), "w", encoding="utf-8"
    ) as f:
        f.write(
            MODEL_NOTE.format(
                encoder=_model_name(tree["encoder_source"], phase_folder),
                llm=_model_name(tree["llm_source"], phase_folder),
                labels=", ".join(labels),
                phase=os.path.basename(os.path.abspath(phase_folder)),
            )
        )


def main(argv=None):
    """Command line: ``<phase folder> <model folder>``.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (``sys.argv[1:]`` when None).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("phase_folder")
    parser.add_argument("model_folder")
    parser.add_argument(
        "--absolute-base-paths",
        action="store_true",
        help="refer to local base model folders by their absolute path "
        "instead of copying them into the model folder",
    )
    args = parser.parse_args(argv)
    print(
        export_model(
            args.phase_folder, args.model_folder, args.absolute_base_paths
        )
    )


if __name__ == "__main__":
    main()
