"""Tiny random models for tests, doctests and the quick demo.

Nothing here downloads anything: models are built from small configs, saved
with ``save_pretrained`` and then loaded back through the very code paths
that real checkpoints take (``from_pretrained`` and SpeechBrain lobes).

Authors
 * speechbrain-emosllm contributors 2026
"""

import os

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TINY_CORPUS = [
    "Transcribe the speech. Here are some audio tokens:",
    "| ASR: the cat sat on the mat | Emotion: Happy Sad Angry Neutral",
    "Surprise Fear Disgust Contempt emotion speaker transcript audio",
    "what is being said, and how does the speaker feel? Choose one.",
]


def make_tiny_tokenizer(vocab_size=400):
    """Builds a byte-level BPE tokenizer with a ChatML chat template.

    Arguments
    ---------
    vocab_size : int
        Size of the vocabulary, special tokens included.

    Returns
    -------
    transformers.PreTrainedTokenizerFast

    Example
    -------
    >>> tokenizer = make_tiny_tokenizer()
    >>> tokenizer.decode(tokenizer.encode("Happy cat"))
    'Happy cat'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(TINY_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def make_tiny_llm(folder, hidden_size=64, num_layers=2, seed=0):
    """Saves a tiny random Llama causal LM and its tokenizer to ``folder``.

    Arguments
    ---------
    folder : str
        Where to save (created if needed).
    hidden_size : int
        Model width.
    num_layers : int
        Number of decoder layers.
    seed : int
        Seed of the random weights.

    Returns
    -------
    str
        ``folder``, loadable with ``AutoModelForCausalLM.from_pretrained``.

    Example
    -------
    >>> import tempfile
    >>> from transformers import AutoModelForCausalLM
    >>> path = make_tiny_llm(tempfile.mkdtemp())
    >>> AutoModelForCausalLM.from_pretrained(path).config.hidden_size
    64
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
        # Wider than the usual 0.02 so that the tiny frozen model's logits
        # can move far enough for a loss to drop within a few steps.
        initializer_range=0.2,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_wavlm(folder, hidden_size=32, num_layers=2, seed=0):
    """Saves a tiny random WavLM encoder and its feature extractor.

    Arguments
    ---------
    folder : str
        Where to save (created if needed).
    hidden_size : int
        Width of the output frames.
    num_layers : int
        Number of transformer layers.
    seed : int
        Seed of the random weights.

    Returns
    -------
    str
        ``folder``, loadable with SpeechBrain's ``WavLM`` lobe.

    Example
    -------
    >>> import tempfile
    >>> from transformers import AutoConfig
    >>> path = make_tiny_wavlm(tempfile.mkdtemp())
    >>> AutoConfig.from_pretrained(path).model_type
    'wavlm'
    """
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    config = WavLMConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        conv_dim=(32, 32, 32),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 8, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        num_buckets=16,
        max_bucket_distance=80,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    torch.manual_seed(seed)
    WavLMModel(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return folder


def write_tone_clips(folder, specs, sample_rate=16000):
    """Writes short synthetic clips whose pitch depends on a class index.

    Arguments
    ---------
    folder : str
        Output folder (created if needed).
    specs : list of (str, float, int)
        (utterance id, duration in seconds, class index) per clip.
    sample_rate : int
        Sampling rate of the written files.

    Returns
    -------
    dict
        Utterance id -> written path.

    Example
    -------
    >>> import tempfile
    >>> paths = write_tone_clips(tempfile.mkdtemp(), [("a", 0.5, 1)])
    >>> os.path.basename(paths["a"])
    'a.wav'
    """
    import numpy as np
    import soundfile

    os.makedirs(folder, exist_ok=True)
    paths = {}
    for index, (utt_id, seconds, class_index) in enumerate(specs):
        rng = np.random.default_rng(index)
        time = np.arange(int(seconds * sample_rate)) / sample_rate
        wave = 0.3 * np.sin(2 * np.pi * (150 + 120 * class_index) * time)
        wave += 0.01 * rng.standard_normal(len(time))
        paths[utt_id] = os.path.join(folder, f"{utt_id}.wav")
        soundfile.write(paths[utt_id], wave.astype("float32"), sample_rate)
    return paths


def make_tiny_whisper(folder, d_model=32, num_layers=1, seed=0, **config):
    """Saves a tiny random Whisper model and its feature extractor.

    Arguments
    ---------
    folder : str
        Where to save (created if needed).
    d_model : int
        Width of the encoder frames.
    num_layers : int
        Encoder and decoder layers.
    seed : int
        Seed of the random weights.
    **config
        Other ``WhisperConfig`` options (e.g. a preset's heads and widths).

    Returns
    -------
    str
        ``folder``, loadable with SpeechBrain's ``Whisper`` lobe.

    Example
    -------
    >>> import tempfile
    >>> from transformers import AutoConfig
    >>> path = make_tiny_whisper(tempfile.mkdtemp())
    >>> AutoConfig.from_pretrained(path).d_model
    32
    """
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    # Whisper's real vocabulary size keeps its default special token ids
    # valid (they matter to the CTranslate2 converter's round trip).
    options = dict(
        vocab_size=51865,
        d_model=d_model,
        encoder_layers=num_layers,
        decoder_layers=num_layers,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_target_positions=32,
    )
    options.update(config)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(WhisperConfig(**options))
    model.save_pretrained(folder)
    WhisperFeatureExtractor().save_pretrained(folder)
    return folder
