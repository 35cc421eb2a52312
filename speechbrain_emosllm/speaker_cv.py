"""Choices made on the training speakers: grouped cross-validation.

A recipe's valid set holds few speakers (RAVDESS: 2 actors, 120 clips), too
few to choose reliably between probes whose scores differ by a few
hundredths. Grouped cross-validation scores each choice on every training
speaker instead, each clip by a probe fitted without its speaker's fold,
and no test speaker takes part. The utterance token's fit uses it
(``utterance_token_fit.fit_token_probe``).

Authors
 * speechbrain-emosllm contributors 2026
"""

from speechbrain_emosllm.metrics import EmotionMetrics
from speechbrain_emosllm.stacking import posteriors_per_penalty

# At most this many folds: leave-one-speaker-out up to 12 speakers (a
# RAVDESS fold trains 12 or 18 actors), round-robin groups beyond.
MAX_FOLDS = 12


def speaker_folds(speakers, max_folds=MAX_FOLDS):
    """Each clip's fold: its speaker's rank (sorted), modulo ``max_folds``.

    A fixed rule that looks at no score; every speaker's clips share a
    fold.

    Arguments
    ---------
    speakers : list of str
        Each clip's speaker.
    max_folds : int
        Most folds.

    Returns
    -------
    list of str

    Example
    -------
    >>> speaker_folds(["b", "a", "c", "a"], max_folds=2)
    ['1', '0', '0', '0']
    """
    rank = {s: i % max_folds for i, s in enumerate(sorted(set(speakers)))}
    return [str(rank[s]) for s in speakers]


def cross_validated_macro_f1(x, y, folds, labels, penalties, seed=0):
    """Macro-F1 of out-of-fold probe decisions over every training clip.

    One score per L2 penalty; every probe is fitted in one batched pass.

    Arguments
    ---------
    x : torch.Tensor
        (utterances, 1, width) pooled frames.
    y : torch.Tensor
        (utterances,) class indices.
    folds : list of str
        Each clip's fold (``speaker_folds``); two or more.
    labels : list of str
        Class names.
    penalties : list of float
        The probes' L2 penalties.
    seed : int
        Seed of each probe's initialisation.

    Returns
    -------
    list of float
        One macro-F1 per penalty.

    Example
    -------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> y = torch.arange(40) % 2; x = torch.randn(40, 1, 3)
    >>> x[:, 0, 0] += 4 * y
    >>> folds = speaker_folds([str(i % 4) for i in range(40)])
    >>> f1 = cross_validated_macro_f1(x, y, folds, ["a", "b"], [1e-3, 1e-2])
    >>> len(f1), min(f1) > 0.9
    (2, True)
    """
    every = posteriors_per_penalty(x, y, folds, len(labels), penalties, seed)
    truth = [labels[i] for i in y.tolist()]
    ids = [str(i) for i in range(len(y))]
    scores = []
    for posteriors in every:
        metrics = EmotionMetrics(labels)
        decided = [labels[i] for i in posteriors.argmax(-1).tolist()]
        metrics.append(ids, decided, truth)
        scores.append(metrics.summarize()["macro_f1"])
    return scores
