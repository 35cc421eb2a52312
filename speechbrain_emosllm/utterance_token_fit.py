"""Fits a ``PosteriorToken`` as a linear probe before a phase.

The probe is fitted the way the recipe's baseline is (full batch, the L2
penalty and the layer weighting chosen on the valid clips), on the cached
frozen frames of the training clips, then written into the QPMapper: its
layer mix, the token's standardisation statistics and its head, whose
readout is the dual basis of the class-name embeddings, so that the
token's dot product with each class name's unit embedding is that class's
posterior. The token is frozen (``PosteriorToken``): the LLM learns to read
a converged classifier instead of chasing one trained in mini-batches next
to it. Neither the paper nor SpeechBrain's speech-LLM recipe does this.

Authors
 * speechbrain-emosllm contributors 2026
"""

import torch
import torch.nn.functional as F

from speechbrain_emosllm.linear_probe import (
    PENALTIES,
    pooled_split,
    select_on_valid,
)
from speechbrain_emosllm.stacking import out_of_fold_posteriors
from speechbrain_emosllm.utterance_token import PosteriorToken


def class_dual_basis(class_embeddings):
    """Vectors whose cosine profile against the class names is a one-hot.

    Arguments
    ---------
    class_embeddings : torch.Tensor
        (n_classes, hidden) embedding of each class name
        (``label_anchor.label_embeddings``), linearly independent.

    Returns
    -------
    torch.Tensor
        (hidden, n_classes) ``P`` with ``normalize(E) @ P`` the identity:
        the token ``P @ z`` has the dot product ``z_k`` with the unit
        direction of class ``k``.

    Example
    -------
    >>> E = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    >>> P = class_dual_basis(E)
    >>> torch.allclose(F.normalize(E, dim=-1) @ P, torch.eye(2), atol=1e-5)
    True
    """
    return torch.linalg.pinv(F.normalize(class_embeddings.float(), dim=-1))


def layer_candidates(current, n_layers):
    """Layer weightings to try: the mapper's own and the last layer.

    The last layer is the baseline probe's input (``linear_probe``); the
    mapper's learned mix is what its queries read. Single middle layers
    are not candidates: two valid actors are too few to choose among all
    of them (the RAVDESS README has the measurement).

    Arguments
    ---------
    current : torch.Tensor
        (n_layers,) the mapper's present weights.
    n_layers : int
        Number of encoder layers in the frames.

    Returns
    -------
    list of torch.Tensor

    Example
    -------
    >>> [w.tolist() for w in layer_candidates(torch.tensor([.5, .5]), 2)]
    [[0.5, 0.5], [0.0, 1.0]]
    >>> [w.tolist() for w in layer_candidates(None, 1)]
    [[1.0]]
    """
    if current is None:  # frames of one layer: nothing to weigh
        return [torch.ones(n_layers)]
    return [current.float(), torch.eye(n_layers)[-1]]


def fit_token_probe(splits, labels, weightings, penalties=PENALTIES, seed=0):
    """The (weighting, L2) probe with the best valid macro-F1.

    Arguments
    ---------
    splits : dict
        ``train`` and ``valid`` -> (pooled, y, ids), ``pooled`` of shape
        (utterances, layers, width) (``linear_probe.pooled_frames``).
    labels : list of str
        Class names.
    weightings : list of torch.Tensor
        Candidate (layers,) weightings of the pooled layers.
    penalties : tuple of float
        L2 penalties to try.
    seed : int
        Seed of each probe's initialisation.

    Returns
    -------
    dict
        ``probe`` (a one-layer ``LinearProbe`` of the mixed frames),
        ``layer_weights``, ``l2`` and ``valid_macro_f1``.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(40, 2, 6); y = torch.arange(40) % 2
    >>> x[:, 1, 0] += 6 * y  # only layer 1 carries the class
    >>> s = {"train": (x[:20], y[:20], None),
    ...      "valid": (x[20:], y[20:], [str(i) for i in range(20)])}
    >>> fit = fit_token_probe(s, ["a", "b"], layer_candidates(
    ...     torch.tensor([1.0, 0.0]), 2), penalties=(1e-3,))
    >>> fit["valid_macro_f1"] > 0.9, fit["layer_weights"]
    (True, [0.0, 1.0])
    """
    best = None
    for weights in weightings:
        mixed = {
            name: (torch.einsum("bld,l->bd", x, weights)[:, None], y, ids)
            for name, (x, y, ids) in splits.items()
        }
        valid, l2, probe = select_on_valid(
            mixed, labels, False, penalties, seed
        )
        if best is None or valid > best["valid_macro_f1"]:
            best = {
                "probe": probe,
                "layer_weights": [round(w, 3) for w in weights.tolist()],
                "l2": l2,
                "valid_macro_f1": valid,
            }
    return best


@torch.no_grad()
def write_token_probe(mapper, fit, class_embeddings):
    """Makes the mapper's ``PosteriorToken`` carry a fitted probe.

    Sets the layer weighting, the token's standardisation statistics and
    its head so that the token is ``P @ softmax(probe_logits)`` (see
    ``class_dual_basis``).

    Arguments
    ---------
    mapper : QPMapper
        With a ``PosteriorToken``.
    fit : dict
        ``fit_token_probe``'s result.
    class_embeddings : torch.Tensor
        (n_classes, hidden) class-name embeddings, in the probe's order.

    Example
    -------
    >>> from speechbrain_emosllm.qpmapper import QPMapper
    >>> m = QPMapper(4, 6, n_queries=2, d_model=8, nhead=2, num_layers=1,
    ...              n_layers=2, utterance_token=PosteriorToken(
    ...                  4, 6, 8, n_classes=2)).eval()
    >>> x = torch.randn(30, 5, 2, 4); y = torch.arange(30) % 2
    >>> pooled = F.layer_norm(x, (4,)).mean(1)
    >>> s = {"train": (pooled, y, None), "valid": (pooled, y, ["u"] * 30)}
    >>> fit = fit_token_probe(s, ["a", "b"], [torch.tensor([0., 1.])])
    >>> E = torch.randn(2, 6)
    >>> write_token_probe(m, fit, E)
    >>> token = m(x)[:, 0]
    >>> cos = F.normalize(token, dim=-1) @ F.normalize(E, dim=-1).T
    >>> logits = fit["probe"](pooled[:, 1:])
    >>> bool((cos.argmax(-1) == logits.argmax(-1)).all())
    True
    """
    token = mapper.utterance_token
    if not isinstance(token, PosteriorToken):
        raise TypeError(
            "Only a QPMapper with a PosteriorToken has a token to fit as a "
            f"probe, not {type(token).__name__}."
        )
    probe = fit["probe"]
    if mapper.layer_sum is not None:
        # log() of a clamped one-hot leaves the other layers ~1e-9 of it.
        weights = torch.tensor(fit["layer_weights"]).clamp(min=1e-9)
        mapper.layer_sum.logits.copy_(weights.log())
    norm = token.norm
    norm.running_mean.copy_(probe.mean[0])
    norm.running_var.copy_(probe.std[0].pow(2) - norm.eps)
    token.head.classifier.load_state_dict(probe.linear.state_dict())
    dual = class_dual_basis(class_embeddings.to(probe.mean.device))
    token.head.readout.weight.copy_(dual)


def fit_utterance_token(
    mapper, folder, datasets, labels, class_embeddings, groups=None
):
    """Fits and writes the ``PosteriorToken`` of a fresh phase.

    Arguments
    ---------
    mapper : QPMapper
        Holding the phase's start weights (after the warm start).
    folder : str
        Keyed feature-cache folder with every clip of ``datasets``.
    datasets : dict
        ``train`` and ``valid`` -> DynamicItemDataset (``dataio_prepare``).
    labels : list of str
        Class names, in the order of ``emo_index``.
    class_embeddings : torch.Tensor
        (n_classes, hidden) class-name embeddings in the LLM's input space.
    groups : dict, optional
        Training clip id -> speaker: also return each training clip's
        out-of-fold posterior (``out_of_fold_posteriors``).

    Returns
    -------
    dict
        ``layer_weights``, ``l2`` and ``valid_macro_f1`` of the fit; with
        ``groups``, ``posteriors`` (clip id -> list of floats).
    """
    splits = {name: pooled_split(folder, d) for name, d in datasets.items()}
    n_layers = splits["train"][0].shape[1]
    current = None
    if mapper.layer_sum is not None:
        current = mapper.layer_sum.layer_weights().cpu()
    fit = fit_token_probe(splits, labels, layer_candidates(current, n_layers))
    write_token_probe(mapper, fit, class_embeddings)
    report = {key: value for key, value in fit.items() if key != "probe"}
    if groups is not None:
        x, y, ids = splits["train"]
        weights = torch.tensor(fit["layer_weights"])
        mixed = torch.einsum("bld,l->bd", x, weights)[:, None]
        posteriors = out_of_fold_posteriors(
            mixed, y, [groups[i] for i in ids], len(labels), fit["l2"]
        )
        report["posteriors"] = dict(zip(ids, posteriors.tolist()))
    return report
