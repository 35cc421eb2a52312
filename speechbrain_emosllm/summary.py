"""Parameter summary of a phase, built without downloading any weight.

    python -m speechbrain_emosllm.summary hparams/p3_joint.yaml [--key=value]

The encoder and the LLM are built on PyTorch's meta device from the
``encoder_config`` / ``llm_config`` of their presets (shapes only, no
memory, no download); the QPMapper is the phase file's own ``qpmapper``
(whatever it builds, its utterance token included), and the LoRA adapters
come from its ``lora_config``. Keys the phase leaves to the command line
(``!PLACEHOLDER``: the data and previous phase folders) are not needed and
are set to null unless given. The last line printed is
``trainable=<int> total=<int>``.

Authors
 * speechbrain-emosllm contributors 2026
"""

import sys
from io import StringIO

import ruamel.yaml
import torch
from hyperpyyaml import load_hyperpyyaml, resolve_references

from speechbrain_emosllm.hparams import compose_hparams


def _plain(node):
    """Converts a ruamel node (tags dropped) to plain Python values."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return getattr(node, "value", node)


def placeholders(stream):
    r"""Top-level keys of a YAML text whose value is ``!PLACEHOLDER``.

    Arguments
    ---------
    stream : io.StringIO
        A phase's YAML text (``compose_hparams``).

    Returns
    -------
    list of str

    Example
    -------
    >>> placeholders(StringIO("a: !PLACEHOLDER\nb: 1\n"))
    ['a']
    """
    tree = ruamel.yaml.YAML().load(stream.getvalue()) or {}
    return [
        key
        for key, value in tree.items()
        if str(getattr(getattr(value, "tag", None), "value", "")).endswith(
            "PLACEHOLDER"
        )
    ]


def resolved_hparams(phase_file, overrides=None):
    """A phase's references resolved, nothing built, placeholders null.

    Arguments
    ---------
    phase_file : str
        Path to a phase YAML.
    overrides : str or dict, optional
        Command-line style overrides.

    Returns
    -------
    (dict, str)
        Plain values (``!new:`` nodes become dicts of their arguments) and
        the resolved YAML text.
    """
    stream, overrides = compose_hparams(phase_file, overrides)
    for key in placeholders(stream):
        overrides.setdefault(key, None)
    resolved = resolve_references(stream, overrides, overrides_must_match=True)
    text = resolved.getvalue()
    return _plain(ruamel.yaml.YAML().load(text)), text


def build_mapper(resolved_text):
    """The phase's ``qpmapper``, built from its YAML on the meta device.

    Arguments
    ---------
    resolved_text : str
        A phase's YAML with references resolved (``resolved_hparams``).

    Returns
    -------
    torch.nn.Module
    """
    yaml = ruamel.yaml.YAML()
    node = yaml.load(resolved_text)["qpmapper"]
    stream = StringIO()
    yaml.dump({"qpmapper": node}, stream)
    with torch.device("meta"):
        return load_hyperpyyaml(stream.getvalue())["qpmapper"]


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


def build_modules(hparams, resolved_text):
    """The phase's modules on the meta device.

    Arguments
    ---------
    hparams, resolved_text : dict, str
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
        modules["qpmapper"] = build_mapper(resolved_text)

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
    modules = build_modules(*resolved_hparams(phase_file, overrides))
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
