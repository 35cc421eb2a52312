"""Adapters that give every frozen speech encoder one interface.

EmoSLLM calls its encoder as ``encoder(wavs, wav_lens)`` and reads frames
whose relative lengths are ``wav_lens``. SpeechBrain's WavLM and wav2vec 2.0
lobes already behave so. Its Whisper lobe takes no lengths and pads every
clip to 30 s (1500 frames); ``WhisperFrames`` runs it on the batch's
longest clip instead, padding masked (``OwnLengthWhisper``); for the
wav2vec 2.0 / WavLM lobes ``LayerFrames`` standardises each waveform over
its own samples. Either way a clip's frames do not depend on its
batch-mates.

Authors
 * speechbrain-emosllm contributors 2026
"""

import math

import torch
from torch import nn

from speechbrain_emosllm.own_length_whisper import OwnLengthWhisper


def cache_options(output_all_hiddens):
    """What of an adapter's options enters the feature-cache key.

    The frames' shape depends on ``output_all_hiddens``; the default gives
    an empty mapping so that caches made before the option keep their key.

    Arguments
    ---------
    output_all_hiddens : bool
        Whether every hidden state is returned.

    Returns
    -------
    dict

    Example
    -------
    >>> cache_options(False), cache_options(True)
    ({}, {'output_all_hiddens': True})
    """
    return {"output_all_hiddens": True} if output_all_hiddens else {}


class WhisperFrames(nn.Module):
    """Frozen Whisper encoder through SpeechBrain's Whisper lobe.

    Arguments
    ---------
    source : str
        Hub id or local folder of a transformers Whisper model.
    save_path : str
        Download cache of the lobe.
    sample_rate : int
        Sampling rate of the input waveforms.
    frame_rate : int
        Encoder frames per second (50 for Whisper).
    output_all_hiddens : bool
        Return every hidden state (the input embeddings and each layer's
        output) as (batch, frames, layers, width), for a learned weighted
        sum of layers (``QPMapper(n_layers=...)``).
    pad_to_window : bool
        Encode every clip padded to Whisper's 30-s window, as the lobe
        does (slower: a 3-s clip costs as much as a 30-s one) instead of
        the batch's longest clip; frames are trimmed back either way.

    Example
    -------
    >>> import torch
    >>> class FakeLobe(nn.Module):  # stands in for the 30 s padding lobe
    ...     def encode(self, wav, wav_lens=None):
    ...         return torch.zeros(wav.shape[0], 1500, 4)
    >>> encoder = WhisperFrames.__new__(WhisperFrames)
    >>> nn.Module.__init__(encoder)
    >>> encoder.whisper, encoder.sample_rate, encoder.frame_rate = (
    ...     FakeLobe(), 16000, 50)
    >>> encoder.output_all_hiddens = False
    >>> encoder(torch.zeros(2, 24000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 75, 4])
    """

    def __init__(
        self,
        source,
        save_path,
        sample_rate=16000,
        frame_rate=50,
        output_all_hiddens=False,
        pad_to_window=False,
    ):
        super().__init__()
        self.whisper = OwnLengthWhisper(
            source,
            save_path,
            sampling_rate=sample_rate,
            encoder_only=True,
            freeze=True,
            output_all_hiddens=output_all_hiddens,
            pad_to_window=pad_to_window,
        )
        self.sample_rate = sample_rate
        self.frame_rate = frame_rate
        self.output_all_hiddens = output_all_hiddens
        # Frames made with the batch-wide floor or another window are
        # cached under other keys.
        self.cache_options = {
            **cache_options(output_all_hiddens),
            "log_mel_floor": "per_clip",
        }
        if not pad_to_window:
            self.cache_options["window"] = "own_length"

    def forward(self, wav, wav_lens=None):
        """Encoder frames up to the batch's longest clip.

        Arguments
        ---------
        wav : torch.Tensor
            (batch, samples) waveforms.
        wav_lens : torch.Tensor, optional
            Relative lengths; they remain valid for the returned frames.

        Returns
        -------
        torch.Tensor
            (batch, frames, width), or (batch, frames, layers, width).
        """
        frames = self.whisper.encode(wav, wav_lens)
        if self.output_all_hiddens:  # (layers, batch, ...) from the lobe
            frames = frames.permute(1, 2, 0, 3)
        seconds = wav.shape[1] / self.sample_rate
        return frames[:, : math.ceil(seconds * self.frame_rate)]


class LayerFrames(nn.Module):
    """Puts the layer axis of an SSL lobe's hidden states after time.

    SpeechBrain's wav2vec 2.0 / WavLM lobes return every hidden state as
    (layers, batch, frames, width) with ``output_all_hiddens``; the feature
    cache pads along the first axis after the batch and ``WeightedLayerSum``
    reads (batch, frames, layers, width), so this wrapper moves the axis.
    Without ``output_all_hiddens`` the lobe's frames pass unchanged.

    Arguments
    ---------
    lobe : torch.nn.Module
        A lobe called as ``lobe(wav, wav_lens)``.

    Example
    -------
    >>> import torch
    >>> class FakeLobe(nn.Module):
    ...     output_all_hiddens = True
    ...     def forward(self, wav, wav_lens=None):
    ...         return torch.zeros(3, wav.shape[0], 10, 4)
    >>> LayerFrames(FakeLobe())(torch.zeros(2, 3200)).shape
    torch.Size([2, 10, 3, 4])
    """

    def __init__(self, lobe):
        super().__init__()
        self.lobe = lobe
        self.output_all_hiddens = bool(getattr(lobe, "output_all_hiddens", 0))
        self.cache_options = cache_options(self.output_all_hiddens)
        # The lobe standardises each waveform over its padded length, so a
        # clip's frames change with its batch-mates: standardise here, over
        # the valid samples only, instead.
        self.normalize_wav = bool(getattr(lobe, "normalize_wav", False))
        if self.normalize_wav:
            lobe.normalize_wav = False
            self.cache_options = {**self.cache_options, "wav_norm": "per_clip"}

    def forward(self, wav, wav_lens=None):
        """The lobe's frames, (batch, frames[, layers], width).

        Arguments
        ---------
        wav : torch.Tensor
            (batch, samples) waveforms.
        wav_lens : torch.Tensor, optional
            Relative lengths.

        Returns
        -------
        torch.Tensor
        """
        if self.normalize_wav:
            wav = standardise_valid(wav, wav_lens)
        frames = self.lobe(wav, wav_lens)
        if self.output_all_hiddens:
            frames = frames.permute(1, 2, 0, 3)
        return frames


def standardise_valid(wav, wav_lens=None, eps=1e-5):
    """Each waveform standardised over its valid samples; padding zero.

    What the lobe's ``layer_norm`` gives a clip alone, whatever the batch.

    Arguments
    ---------
    wav : torch.Tensor
        (batch, samples).
    wav_lens : torch.Tensor, optional
        Relative lengths (all samples valid when None).
    eps : float
        Added to the variance.

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> clip = torch.randn(1, 100)
    >>> padded = torch.cat([clip, torch.zeros(1, 60)], 1)
    >>> out = standardise_valid(padded, torch.tensor([100 / 160]))
    >>> alone = torch.nn.functional.layer_norm(clip, (100,))
    >>> torch.allclose(out[:, :100], alone, atol=1e-5), out[:, 100:].abs().max()
    (True, tensor(0.))
    """
    if wav_lens is None:
        return torch.nn.functional.layer_norm(wav, wav.shape[1:], eps=eps)
    valid = torch.round(wav_lens * wav.shape[1]).clamp(min=1)
    positions = torch.arange(wav.shape[1], device=wav.device)
    mask = (positions[None] < valid[:, None].to(wav.device)).to(wav.dtype)
    count = mask.sum(1, keepdim=True)
    mean = (wav * mask).sum(1, keepdim=True) / count
    var = ((wav - mean) ** 2 * mask).sum(1, keepdim=True) / count
    return (wav - mean) / torch.sqrt(var + eps) * mask
