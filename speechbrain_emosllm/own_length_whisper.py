"""SpeechBrain's Whisper lobe run on each clip's own length.

The lobe pads every clip to Whisper's 30-s window (3000 log-mel frames,
1500 encoder frames) because transformers' ``WhisperEncoder`` refuses any
other length. A 3-s clip then costs as much as a 30-s one. transformers
has no masked, variable-length Whisper encoder, so ``OwnLengthWhisper``
runs the encoder's own modules (convolutions, positional embeddings,
layers, final norm) itself, on the batch's longest clip, with the padding
masked out: each clip's log-mel spectrogram is computed on its own samples
(floored at its own maximum, as Whisper's front end does), zero-padded,
its convolution outputs zeroed past its end and its padded frames hidden
from attention. A clip's frames are thus the same alone or batched (up to
float noise), and a 30-s clip gives the padded lobe's frames.

What changes against the padded model: Whisper was trained on 30-s
windows, so a short clip's frames differ from the padded lobe's (its
frames no longer attend to ~27 s of encoded silence). The RAVDESS README
compares a linear probe and the demo's WER on both.

Authors
 * speechbrain-emosllm contributors 2026
"""

import torch
from speechbrain.integrations.huggingface.whisper import Whisper
from torch import nn


class OwnLengthWhisper(Whisper):
    """Whisper lobe whose encoder runs on the clips' own lengths.

    Built like SpeechBrain's ``Whisper`` lobe (same arguments and weights);
    ``encode(wav, wav_lens)`` gives the encoder's frames.

    Arguments
    ---------
    *args, **kwargs
        SpeechBrain's ``Whisper`` lobe arguments.
    pad_to_window : bool
        Keep the lobe's 30-s padding (each clip's log-mel floor is still
        its own, so frames do not depend on batch-mates either way).

    Example
    -------
    >>> from transformers import WhisperConfig, WhisperModel
    >>> config = WhisperConfig(d_model=8, encoder_layers=1,
    ...     encoder_attention_heads=2, encoder_ffn_dim=16, decoder_layers=1,
    ...     decoder_attention_heads=2, decoder_ffn_dim=16, num_mel_bins=80,
    ...     max_source_positions=1500)
    >>> lobe = OwnLengthWhisper.__new__(OwnLengthWhisper)
    >>> nn.Module.__init__(lobe)
    >>> lobe.model = WhisperModel(config).eval()
    >>> lobe._n_fft, lobe._hop_length, lobe._n_samples = 400, 160, 480000
    >>> lobe.register_buffer("_mel_filters", torch.rand(80, 201))
    >>> lobe.output_all_hiddens, lobe.pad_to_window = False, False
    >>> short, long = torch.randn(1, 16000), torch.randn(1, 48000)
    >>> alone = lobe.encode(short)
    >>> batch = torch.cat([torch.nn.functional.pad(short, (0, 32000)), long])
    >>> batched = lobe.encode(batch, torch.tensor([1 / 3, 1.0]))
    >>> alone.shape, batched.shape
    (torch.Size([1, 50, 8]), torch.Size([2, 150, 8]))
    >>> torch.allclose(alone, batched[:1, :50], atol=1e-5)
    True
    """

    def __init__(self, *args, pad_to_window=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.pad_to_window = pad_to_window

    def clip_mels(self, wav, samples):
        """The lobe's log-mel spectrogram of each clip on its own samples.

        The lobe floors the spectrogram 8 decades below the maximum of the
        whole batch; Whisper floors each clip at its own maximum.
        """
        return [
            self.log_mel_spectrogram(clip[None, :n])
            for clip, n in zip(wav, samples)
        ]

    def encode(self, wav, wav_lens=None):
        """Encoder frames of the batch's longest clip, padding masked.

        (batch, frames, width), or (layers + 1, batch, frames, width) with
        ``output_all_hiddens``.

        Arguments
        ---------
        wav : torch.Tensor
            (batch, samples) waveforms, at most 30 s are read.
        wav_lens : torch.Tensor, optional
            Relative lengths (all samples valid when None).

        Returns
        -------
        torch.Tensor
        """
        with torch.no_grad():
            if self.pad_to_window:
                wav = self.pad_or_trim(wav)
                mels = self.clip_mels(wav, [wav.shape[1]] * wav.shape[0])
                return self.forward_encoder(torch.cat(mels))
            samples = torch.full((wav.shape[0],), wav.shape[1])
            if wav_lens is not None:
                samples = torch.round(wav_lens.cpu() * wav.shape[1]).long()
            samples = samples.clamp(min=self._hop_length, max=self._n_samples)
            return self._masked_encoder(self.clip_mels(wav, samples.tolist()))

    def _masked_encoder(self, mels):
        """Transformers' ``WhisperEncoder.forward`` with padding masked."""
        encoder = self.model.encoder
        lengths = torch.tensor([mel.shape[-1] for mel in mels])
        mel = torch.cat(
            [
                nn.functional.pad(m, (0, lengths.max() - m.shape[-1]))
                for m in mels
            ]
        )
        steps = torch.arange(mel.shape[-1], device=mel.device)
        valid = (steps[None] < lengths[:, None].to(mel.device))[:, None]
        # Zeroing past each clip's end gives its last frames the zero
        # padding the convolutions see on a clip alone.
        hidden = nn.functional.gelu(encoder.conv1(mel * valid)) * valid
        hidden = nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
        frames = hidden.shape[1]
        hidden = hidden + encoder.embed_positions.weight[:frames]
        keep = torch.arange(frames, device=mel.device)[None] < (
            (lengths[:, None].to(mel.device) + 1) // 2
        )
        mask = torch.zeros(keep.shape, dtype=hidden.dtype, device=mel.device)
        mask = mask.masked_fill(~keep, torch.finfo(hidden.dtype).min)
        mask = mask[:, None, None, :].expand(-1, 1, frames, -1)
        states = [hidden]
        for layer in encoder.layers:
            hidden = layer(hidden, mask)
            states.append(hidden)
        states[-1] = encoder.layer_norm(hidden)
        if self.output_all_hiddens:
            return torch.stack(states)
        return states[-1]
