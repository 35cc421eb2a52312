"""Query-pooling mapper (QPMapper) between a speech encoder and an LLM.

The QPMapper of EmoSLLM (arXiv 2508.14130) compresses a variable-length
sequence of encoder frames into a fixed number of vectors living in the
embedding space of a language model. A set of learnable queries is appended
to the frame sequence, a small transformer encoder lets every position attend
to every other one, and only the outputs at the query positions are kept.

Authors
 * speechbrain-emosllm contributors 2026
"""

import math

import torch
import torch.nn.functional as F
from speechbrain.dataio.dataio import length_to_mask
from speechbrain.lobes.models.transformer.Transformer import (
    PositionalEncoding,
)
from torch import nn

from speechbrain_emosllm.layer_weights import WeightedLayerSum


class QPMapper(nn.Module):
    """Maps encoder frames to ``n_queries`` LLM input embeddings.

    The frames are projected to ``d_model``, given sinusoidal positions (so
    that the order of the words survives the pooling: the paper leaves this
    open, and ASR needs it), followed by ``n_queries`` learnable queries, and
    passed through a transformer encoder whose key padding mask hides the
    padded frames. The outputs at the query positions are projected to
    ``output_size``. Queries carry no positional encoding and sit after the
    padded frames, so padding never changes a sample's output.

    Arguments
    ---------
    input_size : int
        Width of the encoder frames (1024 for WavLM Large).
    output_size : int
        Width of the LLM embeddings (3072 for Llama-3.2-3B).
    n_queries : int
        Number of learnable queries, i.e. of output vectors per utterance.
    d_model : int
        Width of the transformer encoder.
    nhead : int
        Number of attention heads.
    num_layers : int
        Number of transformer encoder layers.
    d_ffn : int, optional
        Hidden width of the feed-forward blocks; ``d_model`` when None, which
        with LoRA rank 8 on q/v reproduces the paper's 12.5M parameters.
    dropout : float
        Dropout inside the transformer encoder.
    activation : str
        Feed-forward activation, ``"gelu"`` or ``"relu"``.
    positional_encoding : bool
        Whether to add sinusoidal positions to the frames.
    max_frames : int
        Longest frame sequence the positional encoding supports.
    n_layers : int, optional
        With frames that carry every encoder layer, (batch, time, layers,
        width), learn a weighted sum of the layers first
        (``WeightedLayerSum``); None for (batch, time, width) frames.
    output_norm : bool
        RMS-normalise each output vector and multiply it by a learned gain
        (``output_gain``, kept in log space), which ``match_scale`` sets to
        the RMS of the LLM's token embeddings. Without it the outputs are
        free to grow far beyond the text embeddings (ASR training drove
        them to ~30x on SmolLM2); the LLM's RMSNorm then hides how they
        differ between clips, and the mapper's updates barely move them.
    utterance_token : UtteranceToken, optional
        Adds the clip's standardised mean frame to every query and makes
        the first output a token of it (``speechbrain_emosllm.
        utterance_token``), next to the ``n_queries - 1`` query outputs;
        None: the paper's mapper. A frozen token (``PosteriorToken``) also
        freezes the layer mix it reads.

    Example
    -------
    >>> mapper = QPMapper(input_size=16, output_size=24, n_queries=4,
    ...                   d_model=32, nhead=4, num_layers=1)
    >>> frames = torch.randn(2, 50, 16)
    >>> mapper(frames, torch.tensor([1.0, 0.6])).shape
    torch.Size([2, 4, 24])
    >>> layered = QPMapper(16, 24, n_queries=4, d_model=32, nhead=4,
    ...                    num_layers=1, n_layers=3)
    >>> layered(torch.randn(2, 50, 3, 16)).shape
    torch.Size([2, 4, 24])
    >>> from speechbrain_emosllm.utterance_token import UtteranceToken
    >>> tokened = QPMapper(16, 24, n_queries=4, d_model=32, nhead=4,
    ...                    num_layers=1, utterance_token=UtteranceToken(
    ...                        input_size=16, output_size=24, query_size=32))
    >>> tokened(frames).shape
    torch.Size([2, 4, 24])
    """

    def __init__(
        self,
        input_size,
        output_size,
        n_queries=32,
        d_model=768,
        nhead=8,
        num_layers=2,
        d_ffn=None,
        dropout=0.1,
        activation="gelu",
        positional_encoding=True,
        max_frames=6000,
        n_layers=None,
        output_norm=False,
        utterance_token=None,
    ):
        super().__init__()
        self.n_queries = n_queries
        self.layer_sum = WeightedLayerSum(n_layers) if n_layers else None
        self.input_projection = nn.Linear(input_size, d_model)
        self.queries = nn.Parameter(
            torch.randn(n_queries, d_model) / math.sqrt(d_model)
        )
        self.positional_encoding = (
            PositionalEncoding(d_model, max_len=max_frames)
            if positional_encoding
            else None
        )
        layer = nn.TransformerEncoderLayer(
            d_model=d_model,
            nhead=nhead,
            dim_feedforward=d_ffn or d_model,
            dropout=dropout,
            activation=activation,
            batch_first=True,
            norm_first=True,
        )
        # Pre-norm layers need a final norm; nested tensors are disabled so
        # that padded and unpadded batches take the same numerical path.
        self.encoder = nn.TransformerEncoder(
            layer,
            num_layers=num_layers,
            norm=nn.LayerNorm(d_model),
            enable_nested_tensor=False,
        )
        self.output_projection = nn.Linear(d_model, output_size)
        self.utterance_token = utterance_token
        if utterance_token is not None and utterance_token.frozen:
            if self.layer_sum is not None:
                self.layer_sum.requires_grad_(False)
        self.output_norm = output_norm
        if output_norm:
            self.log_output_gain = nn.Parameter(torch.zeros(()))

    @property
    def utterance_token_index(self):
        """Position of the utterance token in the outputs (None: none)."""
        return 0 if self.utterance_token is not None else None

    @property
    def output_gain(self):
        """Scale of the normalised outputs (None without ``output_norm``)."""
        if not self.output_norm:
            return None
        return self.log_output_gain.exp().item()

    def reset_statistics(self):
        """Forgets the utterance token's statistics (a new corpus).

        Training standardises with batch statistics, so the learned weights
        do not depend on them; evaluation uses their running average, which
        must come from the clips of the phase that runs now.

        Example
        -------
        >>> from speechbrain_emosllm.utterance_token import UtteranceToken
        >>> mapper = QPMapper(4, 6, n_queries=2, d_model=8, nhead=2,
        ...                   num_layers=1,
        ...                   utterance_token=UtteranceToken(4, 6, 8))
        >>> _ = mapper(torch.randn(3, 5, 4) + 7)
        >>> mapper.reset_statistics()
        >>> mapper.utterance_token.norm.running_mean.abs().max().item()
        0.0
        """
        if self.utterance_token is not None:
            self.utterance_token.reset_statistics()

    @torch.no_grad()
    def match_scale(self, embeddings):
        """Sets the output gain to the RMS of an LLM's token embeddings.

        Arguments
        ---------
        embeddings : torch.Tensor
            (vocabulary, width) input embedding table.

        Example
        -------
        >>> mapper = QPMapper(8, 16, n_queries=2, d_model=8, nhead=2,
        ...                   num_layers=1, output_norm=True)
        >>> mapper.match_scale(torch.full((10, 16), 0.5))
        >>> out = mapper(torch.randn(1, 5, 8))
        >>> round(out.pow(2).mean().sqrt().item(), 3), mapper.output_gain
        (0.5, 0.5)
        """
        if not self.output_norm:
            raise ValueError("match_scale needs a QPMapper with output_norm.")
        rms = embeddings.float().pow(2).mean().sqrt()
        self.log_output_gain.copy_(rms.log())

    def forward(self, x, lengths=None, token_posterior=None):
        """Pools a batch of frame sequences into query embeddings.

        Arguments
        ---------
        x : torch.Tensor
            Encoder frames, shape (batch, time, input_size), or (batch,
            time, n_layers, input_size) with ``n_layers``.
        lengths : torch.Tensor, optional
            Relative lengths in [0, 1] (SpeechBrain convention); all frames
            are valid when None.
        token_posterior : torch.Tensor, optional
            (batch, n_classes) posteriors that a ``PosteriorToken`` lays
            out instead of its head's (out-of-fold training posteriors).

        Returns
        -------
        torch.Tensor
            Query outputs, shape (batch, n_queries, output_size).
        """
        batch, time = x.shape[:2]
        if self.layer_sum is not None:
            x = self.layer_sum(x)
        frames = self.input_projection(x)
        if self.positional_encoding is not None:
            frames = frames + self.positional_encoding(frames)
        queries = self.queries.unsqueeze(0).expand(batch, -1, -1)
        frame_mask = torch.ones(batch, time, device=x.device)
        if lengths is not None:
            valid = torch.round(lengths * time).clamp(min=1)
            frame_mask = length_to_mask(valid, max_len=time, device=x.device)
        if self.utterance_token is not None:
            summary, token = self.utterance_token(
                x, frame_mask, token_posterior
            )
            queries = queries + summary.unsqueeze(1)
        elif token_posterior is not None:
            raise ValueError("token_posterior needs a PosteriorToken")
        sequence = torch.cat([frames, queries.to(frames.dtype)], dim=1)

        padding_mask = None
        if lengths is not None:
            query_mask = frame_mask.new_ones(batch, self.n_queries)
            # nn.TransformerEncoder marks padded positions with True.
            padding_mask = ~torch.cat([frame_mask, query_mask], 1).bool()

        encoded = self.encoder(sequence, src_key_padding_mask=padding_mask)
        out = self.output_projection(encoded[:, time:])
        if self.utterance_token is not None:
            token = token.unsqueeze(1).to(out.dtype)
            out = torch.cat([token, out[:, 1:]], dim=1)
        if self.output_norm:
            out = F.rms_norm(out, out.shape[-1:]) * self.log_output_gain.exp()
        return out
