"""Adapters that give every frozen speech encoder one interface.

EmoSLLM calls its encoder as ``encoder(wavs, wav_lens)`` and reads frames
whose relative lengths are ``wav_lens``. SpeechBrain's WavLM and wav2vec 2.0
lobes already behave so. Its Whisper lobe takes no lengths and pads every
clip to 30 s (1500 frames); ``WhisperFrames`` trims those frames back to the
batch's longest clip so that relative lengths hold again.

Authors
 * speechbrain-emosllm contributors 2026
"""

import math

from torch import nn


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

    Example
    -------
    >>> import torch
    >>> class FakeLobe(nn.Module):  # stands in for the 30 s padding lobe
    ...     def forward(self, wav):
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
    ):
        super().__init__()
        from speechbrain.integrations.huggingface.whisper import Whisper

        self.whisper = Whisper(
            source,
            save_path,
            sampling_rate=sample_rate,
            encoder_only=True,
            freeze=True,
            output_all_hiddens=output_all_hiddens,
        )
        self.sample_rate = sample_rate
        self.frame_rate = frame_rate
        self.output_all_hiddens = output_all_hiddens
        self.cache_options = cache_options(output_all_hiddens)

    def forward(self, wav, wav_lens=None):
        """Encoder frames of the batch's longest clip, padding trimmed.

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
        del wav_lens  # Whisper attends to its own padding anyway.
        frames = self.whisper(wav)
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
        frames = self.lobe(wav, wav_lens)
        if self.output_all_hiddens:
            frames = frames.permute(1, 2, 0, 3)
        return frames
