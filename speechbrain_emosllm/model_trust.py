"""What a model folder's ``hyperparams.yaml`` may build before we load it.

HyperPyYAML builds whatever ``!new:`` / ``!name:`` / ``!apply:`` tags name:
loading a model folder runs code of the folder author's choosing (as with
any SpeechBrain model, or a pickled checkpoint). ``check_model_yaml`` lets a
tool refuse folders that name anything but the classes ``export`` writes,
before a single object is built; ``emosllm-infer`` does so unless given
``--trust-model``.

Authors
 * speechbrain-emosllm contributors 2026
"""

import importlib
import inspect
import json
import os

import ruamel.yaml

# The objects an exported folder builds (see ``speechbrain_emosllm.export``
# and the encoder presets in ``speechbrain_emosllm/presets/encoders``).
ALLOWED_OBJECTS = frozenset(
    {
        "speechbrain_emosllm.SpeechLLM",
        "speechbrain_emosllm.QPMapper",
        "speechbrain_emosllm.utterance_token.UtteranceToken",
        "speechbrain_emosllm.utterance_token.PosteriorToken",
        "speechbrain_emosllm.labels.class_count",
        "speechbrain_emosllm.encoders.WhisperFrames",
        "speechbrain_emosllm.encoders.LayerFrames",
        "speechbrain_emosllm.layer_weights.weighted_layer_count",
        "speechbrain.integrations.huggingface.wavlm.WavLM",
        "speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2",
        "speechbrain.utils.parameter_transfer.Pretrainer",
    }
)
# Arguments no allowed object may be given, even if its signature has them.
REFUSED_ARGUMENTS = frozenset({"trust_remote_code"})
# Tags that build nothing: references, copies, tuples, placeholders.
INERT_TAGS = frozenset({"!ref", "!copy", "!tuple", "!PLACEHOLDER"})
# YAML's core types; `!!python/...` tags are not among them.
STANDARD_TAGS = frozenset(
    "tag:yaml.org,2002:" + name
    for name in ("str", "int", "float", "bool", "null", "map", "seq")
)


class UntrustedModelError(ValueError):
    """A model folder's YAML names objects outside the allow-list."""


def allowed_arguments(target):
    """Keyword arguments an allowed object may be given from a YAML file.

    Its named parameters, without ``REFUSED_ARGUMENTS``: nothing reaches a
    ``**kwargs`` (which may pass it on, e.g. to ``from_pretrained``).

    Arguments
    ---------
    target : str
        Dotted name of an object in ``ALLOWED_OBJECTS``.

    Returns
    -------
    set of str

    Example
    -------
    >>> sorted(allowed_arguments("speechbrain_emosllm.labels.class_count"))
    ['label_set']
    """
    module, _, name = target.rpartition(".")
    obj = getattr(importlib.import_module(module), name)
    named = (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    parameters = inspect.signature(obj).parameters.values()
    return {p.name for p in parameters if p.kind in named} - REFUSED_ARGUMENTS


def _nodes(node):
    """Every node of a composed YAML document, depth first."""
    yield node
    if isinstance(node.value, list):
        for item in node.value:
            for child in item if isinstance(item, tuple) else (item,):
                yield from _nodes(child)


def disallowed_tags(text):
    r"""``(line, tag)`` of every tag that would build an unlisted object.

    Arguments
    ---------
    text : str
        A HyperPyYAML document.

    Returns
    -------
    list of (int, str)

    Example
    -------
    >>> disallowed_tags("a: !new:speechbrain_emosllm.QPMapper {}\n"
    ...                 "b: !apply:os.system [ls]\n"
    ...                 "c: !ref <a>\n")
    [(2, '!apply:os.system')]
    >>> disallowed_tags("a: !new:speechbrain_emosllm.SpeechLLM\n"
    ...                 "    source: x\n    trust_remote_code: true\n")
    [(1, '!new:speechbrain_emosllm.SpeechLLM (argument trust_remote_code)')]
    """
    document = ruamel.yaml.YAML(typ="rt").compose(text)
    if document is None:
        return []
    found = []
    for node in _nodes(document):
        tag = str(node.tag.value if hasattr(node.tag, "value") else node.tag)
        if tag in STANDARD_TAGS or tag in INERT_TAGS:
            continue
        kind, _, target = tag.partition(":")
        if kind in ("!new", "!name", "!apply") and target in ALLOWED_OBJECTS:
            found += [
                (node.start_mark.line + 1, f"{tag} (argument {key})")
                for key in _argument_names(node)
                if key not in allowed_arguments(target)
            ]
            continue
        found.append((node.start_mark.line + 1, tag))
    return found


def _argument_names(node):
    """The keys of a mapping node (the keyword arguments of its tag)."""
    if not isinstance(node, ruamel.yaml.nodes.MappingNode):
        return []
    return [str(key.value) for key, _ in node.value]


def bundled_code(folder):
    """Files in a model folder that would make transformers run code.

    Python files, and JSON configs with an ``auto_map`` (which, with
    ``trust_remote_code``, imports the folder's own modules).

    Arguments
    ---------
    folder : str
        A model folder.

    Returns
    -------
    list of str
        Paths relative to ``folder``.

    Example
    -------
    >>> bundled_code("/no/such/folder")
    []
    """
    found = []
    for root, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            path = os.path.join(root, name)
            if name.endswith(".py") or (
                name.endswith(".json") and _has_auto_map(path)
            ):
                found.append(os.path.relpath(path, folder))
    return found


def _has_auto_map(path):
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and "auto_map" in content


def check_model_folder(folder):
    """Raises ``UntrustedModelError`` if loading ``folder`` could run code.

    Its ``hyperparams.yaml`` may build only ``ALLOWED_OBJECTS`` with their
    named arguments, and the folder (bundled base models included) may
    hold no Python file and no ``auto_map`` config.

    Arguments
    ---------
    folder : str
        An exported model folder.
    """
    check_model_yaml(os.path.join(folder, "hyperparams.yaml"))
    code = bundled_code(folder)
    if code:
        raise UntrustedModelError(
            f"{folder} holds code that loading it could run "
            f"({', '.join(code[:5])}): pass --trust-model only if you trust "
            "who made this folder."
        )


def check_model_yaml(path):
    """Raises ``UntrustedModelError`` if the file builds unlisted objects.

    Arguments
    ---------
    path : str
        A model folder's ``hyperparams.yaml``.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        found = disallowed_tags(text)
    except RecursionError:
        raise UntrustedModelError(
            f"{path}: its YAML aliases refer to themselves (recursion)."
        ) from None
    except ruamel.yaml.YAMLError as error:
        raise UntrustedModelError(
            f"{path} is not valid YAML: {error}"
        ) from None
    if found:
        listed = "; ".join(f"line {line}: {tag}" for line, tag in found[:5])
        raise UntrustedModelError(
            f"{path} builds objects that an exported EmoSLLM model does not "
            f"({listed}). Loading it would run that code: pass "
            "--trust-model only if you trust who made this folder."
        )
