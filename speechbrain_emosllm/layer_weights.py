"""A learned, softmax-weighted sum of a frozen encoder's layers.

Emotion lives mostly in the middle layers of SSL encoders, not in the last
one, which pre-training shapes towards its own objective. SpeechBrain's
``WeightedSSLModel`` learns such a sum inside the HF lobe, i.e. before the
frames could be cached; this module does the same after the cache, on frames
that carry every layer: (batch, time, layers, width).

Authors
 * speechbrain-emosllm contributors 2026
"""

import torch
import torch.nn.functional as F
from torch import nn


class WeightedLayerSum(nn.Module):
    """Softmax-weighted sum over the layer axis of encoder frames.

    Each layer is layer-normalised (no affine) before the sum, so that the
    weights compare layers whose scales differ by orders of magnitude. The
    weights start equal (the mean of all layers).

    Arguments
    ---------
    n_layers : int
        Number of layers in the input (hidden states, embeddings included).

    Example
    -------
    >>> pool = WeightedLayerSum(5)
    >>> pool(torch.randn(2, 30, 5, 16)).shape
    torch.Size([2, 30, 16])
    >>> [round(w, 3) for w in pool.layer_weights().tolist()]
    [0.2, 0.2, 0.2, 0.2, 0.2]
    """

    def __init__(self, n_layers):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_layers))

    def layer_weights(self):
        """The current weight of each layer (sums to 1)."""
        return self.logits.softmax(-1).detach()

    def forward(self, frames):
        """Sums the layers of (batch, time, layers, width) frames.

        Arguments
        ---------
        frames : torch.Tensor
            (batch, time, layers, width).

        Returns
        -------
        torch.Tensor
            (batch, time, width).
        """
        if frames.dim() != 4 or frames.shape[2] != self.logits.numel():
            raise ValueError(
                f"Expected frames of shape (batch, time, "
                f"{self.logits.numel()}, width), got {tuple(frames.shape)}: "
                "the encoder must output all hidden layers "
                "(output_all_hiddens) and n_layers must match them."
            )
        normed = F.layer_norm(frames, frames.shape[-1:])
        weights = self.logits.softmax(-1).to(normed.dtype)
        return torch.einsum("btld,l->btd", normed, weights)


def weighted_layer_count(layer_weighting, hidden_states):
    """Layers the QPMapper sums (None: it reads the last one only).

    Arguments
    ---------
    layer_weighting : bool
        Whether to learn a weighted sum of the encoder's layers.
    hidden_states : int or None
        Hidden states the encoder preset can output (None if it cannot).

    Returns
    -------
    int or None

    Example
    -------
    >>> weighted_layer_count(True, 5), weighted_layer_count(False, 5)
    (5, None)
    """
    if not layer_weighting:
        return None
    if not hidden_states:
        raise ValueError(
            "layer_weighting needs an encoder preset that outputs every "
            "hidden layer (encoder_hidden_states is not set: the Whisper "
            "presets support it)."
        )
    return int(hidden_states)
