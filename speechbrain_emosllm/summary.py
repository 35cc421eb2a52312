"""Parameter summary of a phase, built without downloading any weight.

    python -m speechbrain_emosllm.summary hparams/p3_joint.yaml [--key=value]

The encoder and the LLM are built on PyTorch's meta device from the
``encoder_config`` / ``llm_config`` of their presets (shapes only, no
memory, no download); the QPMapper and the LoRA adapters come from the
phase's hyperparameters. The last line printed is
``trainable=<int> total=<int>``.

Authors
 * speechbrain-emosllm contributors 2026
"""

import sys

import ruamel.yaml
import torch
from hyperpyyaml import resolve_references

from speechbrain_emosllm.hparams import compose_hparams
from speechbrain_emosllm.qpmapper import QPMapper


def _plain(node):
    """Converts a ruamel node (tags dropped) to plain Python values."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return getattr(node, "value", node)


def resolved_hparams(phase_file, overrides=None):
    """A phase's hyperparameters with references resolved, nothing built.

    Arguments
    ---------
    phase_file : str
        Path to a phase YAML.
    overrides : str or dict, optional
        Command-line style overrides.

    Returns
    -------
    dict
        Plain values; ``!new:`` nodes become dicts of their arguments.
    """
    stream, overrides = compose_hparams(phase_file, overrides)
    resolved = resolve_references(stream, overrides, overrides_must_match=True)
    return _plain(ruamel.yaml.YAML().load(resolved))


def count_parameters(module):
    """(trainable, total) parameter counts of a module.

    Arguments
    ---------
    module : torch.nn.Module
        Any module.

    Returns
    -------
    tuple of int

    Example
    -------
    >>> count_parameters(torch.nn.Linear(3, 2))
    (8, 8)
    """
    params = list(module.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return trainable, sum(p.numel() for p in params)


def build_modules(hparams):
    """The phase's modules on the meta device.

    Arguments
    ---------
    hparams : dict
        Output of ``resolved_hparams``.

    Returns
    -------
    dict
        Name -> module, with ``requires_grad`` as in training.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    modules = {}
    with torch.device("meta"):
        encoder_config = dict(hparams["encoder_config"])
        encoder = AutoModel.from_config(
            AutoConfig.for_model(
                encoder_config.pop("model_type"), **encoder_config
            )
        )
        encoder.requires_grad_(False)
        modules["encoder"] = encoder

        qp = hparams["qpmapper"]
        modules["qpmapper"] = QPMapper(
            input_size=qp["input_size"],
            output_size=qp["output_size"],
            n_queries=qp["n_queries"],
            d_model=qp["d_model"],
            nhead=qp["nhead"],
            num_layers=qp["num_layers"],
            d_ffn=qp["d_ffn"],
        )

        llm_config = dict(hparams["llm_config"])
        llm = AutoModelForCausalLM.from_config(
            AutoConfig.for_model(llm_config.pop("model_type"), **llm_config)
        )
        llm.requires_grad_(False)
        lora = hparams["lora_config"]
        if isinstance(lora, dict):
            from peft import LoraConfig, get_peft_model

            llm = get_peft_model(llm, LoraConfig(**lora))
        modules["llm"] = llm
    return modules


def main(argv=None):
    """Prints trainable and total parameters per module, then the totals.

    Arguments
    ---------
    argv : list of str, optional
        ``<phase yaml> [--key=value ...]``.
    """
    import speechbrain as sb

    phase_file, _, overrides = sb.parse_arguments(argv or sys.argv[1:])
    overrides = ruamel.yaml.YAML().load(overrides or "{}") or {}
    # No data is read: let the summary run without a data folder.
    overrides.setdefault("data_folder", "unused")
    modules = build_modules(resolved_hparams(phase_file, overrides))
    totals = [0, 0]
    print(f"{'module':<10}{'trainable':>14}{'total':>16}")
    for name, module in modules.items():
        trainable, total = count_parameters(module)
        totals[0] += trainable
        totals[1] += total
        print(f"{name:<10}{trainable:>14,}{total:>16,}")
    print(f"trainable={totals[0]} total={totals[1]}")


if __name__ == "__main__":
    main()
