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

import ruamel.yaml

# The objects an exported folder builds (see ``speechbrain_emosllm.export``
# and the encoder presets in ``speechbrain_emosllm/presets/encoders``).
ALLOWED_OBJECTS = frozenset(
    {
        "speechbrain_emosllm.SpeechLLM",
        "speechbrain_emosllm.QPMapper",
        "speechbrain_emosllm.encoders.WhisperFrames",
        "speechbrain_emosllm.encoders.LayerFrames",
        "speechbrain_emosllm.layer_weights.weighted_layer_count",
        "speechbrain.integrations.huggingface.wavlm.WavLM",
        "speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2",
        "speechbrain.utils.parameter_transfer.Pretrainer",
    }
)
# Tags that build nothing: references, copies, tuples, placeholders.
INERT_TAGS = frozenset({"!ref", "!copy", "!tuple", "!PLACEHOLDER"})
# YAML's core types; `!!python/...` tags are not among them.
STANDARD_TAGS = frozenset(
    "tag:yaml.org,2002:" + name
    for name in ("str", "int", "float", "bool", "null", "map", "seq")
)


class UntrustedModelError(ValueError):
    """A model folder's YAML names objects outside the allow-list."""


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
            continue
        found.append((node.start_mark.line + 1, tag))
    return found


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
