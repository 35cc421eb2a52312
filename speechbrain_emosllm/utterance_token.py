"""The utterance token: one LLM input vector for the whole clip.

Attention pooling passes a clip's utterance-level cues (emotion, speaker)
on at the scale they have in the frames, which is small next to the
queries' own vectors. The utterance token module gives the QPMapper the
clip's standardised mean frame (the linear probe's input) twice: added to
every query through a learned projection (the summary), and as the first
output vector (the token). Two heads make the token:

* ``UtteranceToken``: a linear projection, trained with the phase (the
  label anchor pulls it towards the class names);
* ``PosteriorToken``: a classifier's posterior laid out along the LLM's
  class-name embeddings, fitted as a linear probe before the phase
  (``speechbrain_emosllm.utterance_token_fit``) and frozen.

Its weights live in the QPMapper's state dict under ``utterance_token.``;
the head (``utterance_token.head.``) is what a fitted token sets afresh.

Authors
 * speechbrain-emosllm contributors 2026
"""

import torch
import torch.nn.functional as F
from torch import nn


def masked_mean(frames, mask):
    """Mean over time of the valid frames of each clip.

    Arguments
    ---------
    frames : torch.Tensor
        (batch, time, width).
    mask : torch.Tensor
        (batch, time), 1 for valid frames.

    Returns
    -------
    torch.Tensor
        (batch, width).

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [9.0]]])
    >>> masked_mean(x, torch.tensor([[1.0, 1.0, 0.0]]))
    tensor([[2.]])
    """
    weights = mask / mask.sum(1, keepdim=True)
    return torch.einsum("bt,btd->bd", weights.to(frames.dtype), frames)


class UtteranceToken(nn.Module):
    """The standardised mean frame as a query summary and a linear token.

    The mean frame is standardised across clips (``nn.BatchNorm1d``
    without affine: batch statistics in training, their cumulative
    average, which a frozen encoder keeps stationary, in evaluation).

    Arguments
    ---------
    input_size : int
        Width of the frames.
    output_size : int
        Width of the LLM's embeddings (the token).
    query_size : int
        Width of the QPMapper's queries (the summary).

    Example
    -------
    >>> token = UtteranceToken(input_size=4, output_size=6, query_size=8)
    >>> summary, vector = token(torch.randn(3, 5, 4), torch.ones(3, 5))
    >>> summary.shape, vector.shape
    (torch.Size([3, 8]), torch.Size([3, 6]))
    """

    # Whether training leaves the head and the statistics alone.
    frozen = False

    def __init__(self, input_size, output_size, query_size):
        super().__init__()
        self.norm = nn.BatchNorm1d(input_size, affine=False, momentum=None)
        self.summary = nn.Linear(input_size, query_size)
        self.head = self.make_head(input_size, output_size)

    def make_head(self, input_size, output_size):
        """The module that maps the standardised mean frame to the token."""
        return nn.Linear(input_size, output_size)

    def reset_statistics(self):
        """Forgets the standardisation statistics (a new corpus).

        Example
        -------
        >>> token = UtteranceToken(2, 3, 3)
        >>> _ = token(torch.randn(4, 5, 2) + 7, torch.ones(4, 5))
        >>> token.reset_statistics()
        >>> token.norm.running_mean.abs().max().item()
        0.0
        """
        self.norm.reset_running_stats()

    def standardise(self, mean_frame):
        """Standardises (batch, input_size) mean frames across clips."""
        norm = self.norm
        # BatchNorm cannot take batch statistics of a single clip.
        if self.training and not self.frozen and mean_frame.shape[0] > 1:
            return norm(mean_frame)
        return F.batch_norm(
            mean_frame, norm.running_mean, norm.running_var, eps=norm.eps
        )

    def forward(self, frames, mask, posterior=None):
        """The summary and the token of each clip.

        Arguments
        ---------
        frames : torch.Tensor
            (batch, time, input_size).
        mask : torch.Tensor
            (batch, time), 1 for valid frames.
        posterior : torch.Tensor, optional
            (batch, n_classes) posteriors to lay out instead of the head's
            (a ``PosteriorToken``'s training clips, ``stacking``).

        Returns
        -------
        (torch.Tensor, torch.Tensor)
            (batch, query_size) summary, (batch, output_size) token.
        """
        standardised = self.standardise(masked_mean(frames, mask))
        return self.summary(standardised), self.token(standardised, posterior)

    def token(self, standardised, posterior=None):
        """The token of standardised mean frames (batch, input_size)."""
        if posterior is not None:
            raise ValueError("token_posterior needs a PosteriorToken")
        return self.head(standardised)


class ClassPosterior(nn.Module):
    """``readout(softmax(classifier(x)))``: a posterior in an LLM's space.

    With ``readout`` set to the dual basis of the class-name embeddings
    (``utterance_token_fit.class_dual_basis``), the token's dot product
    with the unit embedding of class ``k`` is the posterior of ``k``.

    Arguments
    ---------
    input_size : int
        Width of the input vector.
    n_classes : int
        Number of classes.
    output_size : int
        Width of the LLM's embeddings.

    Example
    -------
    >>> head = ClassPosterior(input_size=6, n_classes=3, output_size=4)
    >>> _ = torch.nn.init.eye_(head.readout.weight)
    >>> out = head(torch.randn(2, 6))
    >>> torch.allclose(out[:, :3].sum(-1), torch.ones(2))
    True
    """

    def __init__(self, input_size, n_classes, output_size):
        super().__init__()
        self.classifier = nn.Linear(input_size, n_classes)
        self.readout = nn.Linear(n_classes, output_size, bias=False)

    def posterior(self, x):
        """(batch, n_classes) class posterior of ``x`` (batch, input_size)."""
        return self.classifier(x).float().softmax(-1)

    def forward(self, x):
        """The token of each vector in ``x`` (batch, input_size)."""
        return self.readout(self.posterior(x).to(x.dtype))


class PosteriorToken(UtteranceToken):
    """An utterance token that carries a fitted probe's class posterior.

    The head is fitted as a linear probe of the frozen frames before the
    phase (``utterance_token_fit.fit_utterance_token``) and stays frozen,
    as do the standardisation statistics and the QPMapper's layer mix the
    probe was fitted on: the LLM learns to read a converged classifier. A
    posterior rather than the logits, because the LLM reads the decision
    off the token's profile, and the posterior puts the likely classes
    first (the recipe README has the measurements).

    Arguments
    ---------
    input_size : int
        Width of the frames.
    output_size : int
        Width of the LLM's embeddings.
    query_size : int
        Width of the QPMapper's queries.
    n_classes : int
        Number of classes of the label set.
    dropout : float
        In training, the probability that a clip's token carries the
        uniform posterior (no decision), so that the phase must also learn
        to answer from the queries.

    Example
    -------
    >>> token = PosteriorToken(4, 6, 8, n_classes=3)
    >>> token.head.classifier.out_features, token.head.readout.weight.shape
    (3, torch.Size([6, 3]))
    >>> any(p.requires_grad for p in token.head.parameters())
    False

    In training, a given posterior (out-of-fold, ``utterance_token_fit``)
    replaces the head's, and dropout replaces it by the uniform one:

    >>> _ = torch.nn.init.eye_(token.head.readout.weight)
    >>> given = torch.tensor([[1.0, 0.0, 0.0]])
    >>> _, vector = token(torch.randn(1, 5, 4), torch.ones(1, 5), given)
    >>> vector[0, :3].tolist()
    [1.0, 0.0, 0.0]
    >>> token.dropout = 1.0
    >>> _, vector = token(torch.randn(1, 5, 4), torch.ones(1, 5), given)
    >>> [round(v, 3) for v in vector[0, :3].tolist()]
    [0.333, 0.333, 0.333]
    """

    frozen = True

    def __init__(
        self, input_size, output_size, query_size, n_classes, dropout=0.0
    ):
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"token_dropout {dropout} is not in [0, 1]")
        self.n_classes = n_classes
        self.dropout = dropout
        super().__init__(input_size, output_size, query_size)
        self.head.requires_grad_(False)

    def make_head(self, input_size, output_size):
        """A frozen ``ClassPosterior`` over the label set's classes."""
        return ClassPosterior(input_size, self.n_classes, output_size)

    def token(self, standardised, posterior=None):
        """The head's posterior (or ``posterior``) along the class names.

        In training, ``dropout`` replaces a clip's posterior by the uniform
        one.
        """
        if posterior is None:
            posterior = self.head.posterior(standardised)
        posterior = posterior.float()
        if self.training and self.dropout > 0:
            dropped = torch.rand(len(posterior), device=posterior.device)
            uniform = torch.full_like(posterior, 1.0 / self.n_classes)
            posterior = torch.where(
                (dropped < self.dropout)[:, None], uniform, posterior
            )
        return self.head.readout(posterior.to(standardised.dtype))
