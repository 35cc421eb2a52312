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
from speechbrain_emosllm.posterior_token import ClassPosteriorToken


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
    utterance_summary : bool
        Add to every query a projection of the utterance's mean frame,
        standardised across utterances (``nn.BatchNorm1d`` without affine:
        batch statistics in training, their cumulative average, which a
        frozen encoder keeps stationary, in evaluation). The
        mean frame of a clip differs from the corpus mean by ~1-5% of its
        energy (Whisper tiny.en on RAVDESS), and attention pooling passes
        it on at that scale next to the queries' own vectors: without it
        the query outputs hardly vary between clips, and nothing
        utterance-level (emotion, speaker) reaches the LLM. Standardised,
        this is exactly the linear probe's input.
    utterance_token : bool
        Make the first output a linear projection of the standardised
        mean frame (the linear probe's input) instead of a query's
        output: one utterance-level vector for the LLM to read, next to
        the ``n_queries - 1`` query outputs.
    token_classes : int, optional
        With ``utterance_token``, make the token a class posterior in the
        LLM's space (``ClassPosteriorToken``) instead of a linear
        projection; ``utterance_token_fit`` fits it as a linear probe.
    output_norm : bool
        RMS-normalise each output vector and multiply it by a learned gain
        (``output_gain``, kept in log space), which ``match_scale`` sets to
        the RMS of the LLM's token embeddings. Without it the outputs are
        free to grow far beyond the text embeddings (ASR training drove
        them to ~30x on SmolLM2); the LLM's RMSNorm then hides how they
        differ between clips, and the mapper's updates barely move them.

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
    >>> posterior = QPMapper(16, 24, n_queries=4, d_model=32, nhead=4,
    ...                      num_layers=1, utterance_token=True,
    ...                      token_classes=3)
    >>> posterior(frames).shape
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
        utterance_summary=False,
        output_norm=False,
        utterance_token=False,
        token_classes=None,
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
        self.summary_norm = self.summary_projection = None
        self.token_projection = None
        if utterance_summary or utterance_token:
            self.summary_norm = nn.BatchNorm1d(
                input_size, affine=False, momentum=None
            )
        if utterance_summary:
            self.summary_projection = nn.Linear(input_size, d_model)
        if token_classes and not utterance_token:
            raise ValueError(
                "token_classes shapes the utterance token: set "
                "utterance_token=True (qpmapper_utterance_token) too."
            )
        if utterance_token and token_classes:
            self.token_projection = ClassPosteriorToken(
                input_size, token_classes, output_size
            )
        elif utterance_token:
            self.token_projection = nn.Linear(input_size, output_size)
        self.frozen_statistics = False
        self.output_norm = output_norm
        if output_norm:
            self.log_output_gain = nn.Parameter(torch.zeros(()))

    @property
    def utterance_token_index(self):
        """Position of the utterance token in the outputs (None: none)."""
        return 0 if self.token_projection is not None else None

    @property
    def output_gain(self):
        """Scale of the normalised outputs (None without ``output_norm``)."""
        if not self.output_norm:
            return None
        return self.log_output_gain.exp().item()

    def reset_statistics(self):
        """Forgets the utterance summary's statistics (a new corpus).

        Training standardises with batch statistics, so the learned weights
        do not depend on them; evaluation uses their running average, which
        must come from the clips of the phase that runs now.

        Example
        -------
        >>> mapper = QPMapper(4, 6, n_queries=2, d_model=8, nhead=2,
        ...                   num_layers=1, utterance_summary=True)
        >>> _ = mapper(torch.randn(3, 5, 4) + 7)
        >>> mapper.reset_statistics()
        >>> mapper.summary_norm.running_mean.abs().max().item()
        0.0
        """
        if self.summary_norm is not None:
            self.summary_norm.reset_running_stats()

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

    def freeze_utterance_token(self):
        """Stops training from moving the utterance token's classifier.

        Freezes the layer weighting and the token projection, and
        standardises with the stored statistics in training too
        (``utterance_token_fit.write_token_probe`` fitted all three).

        Example
        -------
        >>> m = QPMapper(4, 6, n_queries=2, d_model=8, nhead=2,
        ...              num_layers=1, n_layers=2, utterance_token=True)
        >>> m.freeze_utterance_token()
        >>> m.token_projection.weight.requires_grad, m.frozen_statistics
        (False, True)
        """
        if self.layer_sum is None or self.token_projection is None:
            raise ValueError(
                "Only a QPMapper with n_layers and utterance_token has a "
                "token classifier to freeze."
            )
        self.layer_sum.requires_grad_(False)
        self.token_projection.requires_grad_(False)
        self.frozen_statistics = True

    def _standardise(self, mean_frame):
        # BatchNorm cannot take batch statistics of a single utterance.
        norm = self.summary_norm
        batch_statistics = self.training and not self.frozen_statistics
        if batch_statistics and mean_frame.shape[0] > 1:
            return norm(mean_frame)
        return F.batch_norm(
            mean_frame, norm.running_mean, norm.running_var, eps=norm.eps
        )

    def forward(self, x, lengths=None):
        """Pools a batch of frame sequences into query embeddings.

        Arguments
        ---------
        x : torch.Tensor
            Encoder frames, shape (batch, time, input_size), or (batch,
            time, n_layers, input_size) with ``n_layers``.
        lengths : torch.Tensor, optional
            Relative lengths in [0, 1] (SpeechBrain convention); all frames
            are valid when None.

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
        if self.summary_norm is not None:
            weights = frame_mask / frame_mask.sum(1, keepdim=True)
            mean_frame = torch.einsum("bt,btd->bd", weights.to(x.dtype), x)
            standardised = self._standardise(mean_frame)
        if self.summary_projection is not None:
            summary = self.summary_projection(standardised)
            queries = queries + summary.unsqueeze(1)
        sequence = torch.cat([frames, queries.to(frames.dtype)], dim=1)

        padding_mask = None
        if lengths is not None:
            query_mask = frame_mask.new_ones(batch, self.n_queries)
            # nn.TransformerEncoder marks padded positions with True.
            padding_mask = ~torch.cat([frame_mask, query_mask], 1).bool()

        encoded = self.encoder(sequence, src_key_padding_mask=padding_mask)
        out = self.output_projection(encoded[:, time:])
        if self.token_projection is not None:
            token = self.token_projection(standardised).unsqueeze(1)
            out = torch.cat([token.to(out.dtype), out[:, 1:]], dim=1)
        if self.output_norm:
            out = F.rms_norm(out, out.shape[-1:]) * self.log_output_gain.exp()
        return out
