"""An auxiliary loss that anchors the audio embeddings to the label words.

Learning emotion only through the LLM's answer is slow: the gradient that
reaches the QPMapper has passed through the whole frozen LLM and its LoRA
weights, one label token per clip. This loss gives the mapper a direct,
low-variance signal in the LLM's own terms: the mean of a clip's query
outputs (or its utterance token, see ``QPMapper``) is classified by its
cosine similarity to the LLM's embedding of each class name (the tokens
the answer would spell). No classifier is
learned: the mapper learns to put the answer's word where the LLM already
reads words, and the LLM's answer is still what every mode reports. Neither
the paper nor SpeechBrain's speech-LLM recipe has such a term.

Authors
 * speechbrain-emosllm contributors 2026
"""

import torch
import torch.nn.functional as F
from torch import nn


def label_embeddings(embedding_table, token_ids):
    """Mean input embedding of each label's tokens.

    Arguments
    ---------
    embedding_table : torch.Tensor
        (vocabulary, hidden) the LLM's input embeddings.
    token_ids : list of list of int
        Each label's tokens (``PromptBuilder.label_token_ids``).

    Returns
    -------
    torch.Tensor
        (n_labels, hidden).

    Example
    -------
    >>> label_embeddings(torch.arange(6.0).view(3, 2), [[0], [1, 2]])
    tensor([[0., 1.],
            [3., 4.]])
    """
    rows = [embedding_table[torch.tensor(ids)].float() for ids in token_ids]
    return torch.stack([row.mean(0) for row in rows])


class LabelAnchor(nn.Module):
    """Scores audio embeddings against the embeddings of the class names.

    Arguments
    ---------
    label_embeddings : torch.Tensor
        (n_classes, hidden) embedding of each class name in the LLM's input
        space (``label_embeddings``).
    scale : float
        Inverse temperature of the cosine similarities (they lie in
        [-1, 1]; 10 lets the softmax reach confident decisions).
    token_index : int, optional
        Score this output only (the QPMapper's utterance token); None
        scores the mean of all outputs.

    Example
    -------
    >>> anchor = LabelAnchor(torch.eye(3, 8), scale=10.0)
    >>> audio = torch.zeros(2, 4, 8)
    >>> audio[0, :, 1] = 1.0  # the second class's direction
    >>> audio[1, :, 2] = 1.0
    >>> anchor(audio).argmax(-1).tolist()
    [1, 2]
    >>> anchor.loss(audio, torch.tensor([1, 2])).item() < 0.01
    True
    """

    def __init__(self, label_embeddings, scale=10.0, token_index=None):
        super().__init__()
        self.token_index = token_index
        self.register_buffer(
            "label_directions",
            F.normalize(label_embeddings.detach().float(), dim=-1),
            persistent=False,
        )
        self.scale = scale

    def forward(self, audio_embeddings):
        """Class logits (batch, n_classes) of (batch, queries, hidden)."""
        if self.token_index is None:
            pooled = audio_embeddings.float().mean(1)
        else:
            pooled = audio_embeddings[:, self.token_index].float()
        pooled = F.normalize(pooled, dim=-1)
        return self.scale * pooled @ self.label_directions.T

    def loss(self, audio_embeddings, targets, weights=None):
        """Cross-entropy of the class logits.

        Arguments
        ---------
        audio_embeddings : torch.Tensor
            (batch, queries, hidden) QPMapper outputs.
        targets : torch.Tensor
            (batch,) class indices.
        weights : torch.Tensor, optional
            (batch,) per-clip weights (class balancing).

        Returns
        -------
        torch.Tensor
            Scalar loss.
        """
        losses = F.cross_entropy(
            self(audio_embeddings), targets, reduction="none"
        )
        if weights is None:
            return losses.mean()
        return (losses * weights).sum() / weights.sum()
