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
