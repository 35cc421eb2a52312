"""Loading the frozen causal LLM (optionally 4/8-bit, with LoRA).

Authors
 * speechbrain-emosllm contributors 2026
"""

import torch


def check_quantization_support(quantization_config):
    """Fails early, with a clear message, where 4/8-bit loading cannot work.

    Arguments
    ---------
    quantization_config : transformers.BitsAndBytesConfig
        The requested quantisation.

    Example
    -------
    >>> from transformers import BitsAndBytesConfig
    >>> if not torch.cuda.is_available():
    ...     try:
    ...         check_quantization_support(
    ...             BitsAndBytesConfig(load_in_4bit=True))
    ...     except RuntimeError as error:
    ...         print(str(error)[:40])
    4/8-bit LLM loading (bitsandbytes) needs
    """
    if not torch.cuda.is_available():
        raise RuntimeError(
            "4/8-bit LLM loading (bitsandbytes) needs a CUDA GPU, and none "
            "is available: set quantization_config to null (and maybe "
            "llm_dtype: bfloat16) on this machine."
        )
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError(
            "4/8-bit LLM loading needs the bitsandbytes package: "
            "pip install bitsandbytes"
        )


def native_bfloat16():
    """Whether this machine multiplies bfloat16 matrices in hardware.

    A CUDA GPU with bfloat16 support, or a CPU with AVX512-BF16 or AMX
    tiles: there a frozen LLM in bfloat16 trains several times faster
    than in float32 (on CPUs without them bfloat16 is emulated and
    slower). torch exposes the CPU checks only as private functions, so
    a torch without them counts as no support.

    Returns
    -------
    bool

    Example
    -------
    >>> isinstance(native_bfloat16(), bool)
    True
    """
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(
        bool(getattr(torch.cpu, name, lambda: False)()) for name in checks
    )
