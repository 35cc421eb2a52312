"""Fits a ``PosteriorToken`` as a linear probe before a phase.

The probe is fitted the way the recipe's baseline is (full batch, one
linear layer), on the cached frozen frames of the training clips; its L2
penalty and layer weighting (the mapper's, the last layer, or the one the
weighted-layers baseline learns) are chosen by grouped cross-validation
over the training speakers (``speaker_cv``; on the valid clips when the
manifest names no speakers). It is then written into the QPMapper: its
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
    probe_scores,
    select_on_valid,
    train_probe,
)
from speechbrain_emosllm.speaker_cv import (
    cross_validated_macro_f1,
    speaker_folds,
)
from speechbrain_emosllm.stacking import out_of_fold_posteriors
from speechbrain_emosllm.utterance_token import PosteriorToken

# What a fit chose, written into the phase's output folder by the recipe.
TOKEN_FIT_FILE = "utterance_token_fit.json"


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


def layer_candidates(current, n_layers, learned=None):
    """Layer weightings to try: the mapper's own, the last layer, a probe's.

    The last layer is the baseline probe's input and ``learned`` the mix
    the weighted-layers baseline learns (``linear_probe``); the mapper's
    own mix is what its queries read. Single middle layers are not
    candidates: two valid actors are too few to choose among all of them
    (the RAVDESS README has the measurement).

    Arguments
    ---------
    current : torch.Tensor
        (n_layers,) the mapper's present weights.
    n_layers : int
        Number of encoder layers in the frames.
    learned : torch.Tensor, optional
        (n_layers,) the weighted-layers probe's learned weights.

    Returns
    -------
    dict
        Name -> (n_layers,) weights, in the order of preference on a tie.

    Example
    -------
    >>> found = layer_candidates(torch.tensor([.5, .5]), 2)
    >>> {name: w.tolist() for name, w in found.items()}
    {'mapper': [0.5, 0.5], 'last_layer': [0.0, 1.0]}
    >>> list(layer_candidates(torch.tensor([.5, .5]), 2, torch.ones(2) / 2))
    ['mapper', 'last_layer', 'weighted_layers_probe']
    >>> layer_candidates(None, 1)
    {'only_layer': tensor([1.])}
    """
    if current is None:  # frames of one layer: nothing to weigh
        return {"only_layer": torch.ones(n_layers)}
    candidates = {
        "mapper": current.float(),
        "last_layer": torch.eye(n_layers)[-1],
    }
    if learned is not None:
        candidates["weighted_layers_probe"] = learned.float()
    return candidates


def learned_layer_mix(splits, labels, penalties=PENALTIES, seed=0):
    """The layer weights of the weighted-layers probe (valid-picked L2).

    Arguments
    ---------
    splits : dict
        ``train`` and ``valid`` -> (pooled, y, ids), as ``fit_token_probe``.
    labels : list of str
        Class names.
    penalties : tuple of float
        L2 penalties to try.
    seed : int
        Seed of each probe's initialisation.

    Returns
    -------
    torch.Tensor
        (layers,) softmax weights that sum to one.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(40, 2, 6); y = torch.arange(40) % 2
    >>> x[:, 0, 0] += 6 * y  # only layer 0 carries the class
    >>> s = {"train": (x[:20], y[:20], None),
    ...      "valid": (x[20:], y[20:], [str(i) for i in range(20)])}
    >>> w = learned_layer_mix(s, ["a", "b"], penalties=(1e-3,))
    >>> round(w.sum().item(), 4), bool(w[0] > w[1])
    (1.0, True)
    """
    _, _, probe = select_on_valid(splits, labels, True, penalties, seed)
    return probe.layer_logits.detach().softmax(-1)


def fit_token_probe(
    splits, labels, weightings, penalties=PENALTIES, seed=0, folds=None
):
    """The (weighting, L2) probe with the best valid or cross-validated score.

    Without ``folds`` each choice is scored on the valid clips; with them,
    by grouped cross-validation over the training clips
    (``speaker_cv``), and the chosen probe is then fitted on every
    training clip.

    Arguments
    ---------
    splits : dict
        ``train`` and ``valid`` -> (pooled, y, ids), ``pooled`` of shape
        (utterances, layers, width) (``linear_probe.pooled_frames``).
    labels : list of str
        Class names.
    weightings : dict
        Name -> candidate (layers,) weighting of the pooled layers
        (``layer_candidates``); the first wins a tie.
    penalties : tuple of float
        L2 penalties to try.
    seed : int
        Seed of each probe's initialisation.
    folds : list of str, optional
        Each training clip's fold (``speaker_cv.speaker_folds``).

    Returns
    -------
    dict
        ``probe`` (a one-layer ``LinearProbe`` of the mixed frames),
        ``layer_choice`` (the winning candidate's name), ``layer_weights``,
        ``l2``, ``valid_macro_f1``, ``selected_on`` (``valid`` or
        ``speaker_cv``) and, with ``folds``, ``cv_macro_f1``.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(40, 2, 6); y = torch.arange(40) % 2
    >>> x[:, 1, 0] += 6 * y  # only layer 1 carries the class
    >>> s = {"train": (x[:20], y[:20], None),
    ...      "valid": (x[20:], y[20:], [str(i) for i in range(20)])}
    >>> fit = fit_token_probe(s, ["a", "b"], layer_candidates(
    ...     torch.tensor([1.0, 0.0]), 2), penalties=(1e-3,))
    >>> fit["valid_macro_f1"] > 0.9, fit["layer_choice"], fit["layer_weights"]
    (True, 'last_layer', [0.0, 1.0])
    >>> fit = fit_token_probe(s, ["a", "b"], layer_candidates(
    ...     torch.tensor([1.0, 0.0]), 2), penalties=(1e-3,),
    ...     folds=[str(i // 5) for i in range(20)])
    >>> fit["selected_on"], fit["layer_choice"], fit["cv_macro_f1"] >= 0.8
    ('speaker_cv', 'last_layer', True)
    """
    best = None
    for name, weights in weightings.items():
        mixed = {
            split: (torch.einsum("bld,l->bd", x, weights)[:, None], y, ids)
            for split, (x, y, ids) in splits.items()
        }
        probe = None  # fitted on every training clip once chosen
        if folds is None:
            score, l2, probe = select_on_valid(
                mixed, labels, False, penalties, seed
            )
        else:
            x, y, _ = mixed["train"]
            scores = cross_validated_macro_f1(
                x, y, folds, labels, penalties, seed
            )
            score = max(scores)
            l2 = penalties[scores.index(score)]
        if best is None or score > best[0]:
            best = (score, name, weights, l2, mixed, probe)
    score, name, weights, l2, mixed, probe = best
    if probe is None:
        torch.manual_seed(seed)
        probe = train_probe(*mixed["train"][:2], len(labels), False, l2)
    fit = {
        "probe": probe,
        "layer_choice": name,
        "layer_weights": [round(w, 3) for w in weights.tolist()],
        "l2": l2,
        "valid_macro_f1": probe_scores(probe, *mixed["valid"], labels)[
            "macro_f1"
        ],
        "selected_on": "valid" if folds is None else "speaker_cv",
    }
    if folds is not None:
        fit["cv_macro_f1"] = score
    return fit


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
    >>> fit = fit_token_probe(s, ["a", "b"], {"last": torch.tensor([0., 1.])})
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
    mapper,
    folder,
    datasets,
    labels,
    class_embeddings,
    speakers=None,
    out_of_fold=False,
):
    """Fits and writes the ``PosteriorToken`` of a fresh phase.

    The layer mix and L2 penalty are chosen by grouped cross-validation
    over the training speakers when ``speakers`` names three or more
    (``speaker_cv``), on the valid clips otherwise.

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
    speakers : dict, optional
        Training clip id -> speaker.
    out_of_fold : bool
        Also return each training clip's posterior from probes fitted
        without its speaker (``out_of_fold_posteriors``; needs
        ``speakers``).

    Returns
    -------
    dict
        ``layer_choice``, ``layer_weights``, ``l2``, ``valid_macro_f1``,
        ``selected_on`` (and ``cv_macro_f1``) of the fit; with
        ``out_of_fold``, ``posteriors`` (clip id -> list of floats).
    """
    splits = {name: pooled_split(folder, d) for name, d in datasets.items()}
    n_layers = splits["train"][0].shape[1]
    current = None
    if mapper.layer_sum is not None:
        current = mapper.layer_sum.layer_weights().cpu()
    learned = None
    if current is not None and n_layers > 1:
        learned = learned_layer_mix(splits, labels)
    candidates = layer_candidates(current, n_layers, learned)
    _, _, ids = splits["train"]
    folds = None
    if speakers is not None and len({speakers[i] for i in ids}) >= 3:
        folds = speaker_folds([speakers[i] for i in ids])
    fit = fit_token_probe(splits, labels, candidates, folds=folds)
    write_token_probe(mapper, fit, class_embeddings)
    report = {key: value for key, value in fit.items() if key != "probe"}
    if out_of_fold:
        x, y, ids = splits["train"]
        weights = torch.tensor(fit["layer_weights"])
        mixed = torch.einsum("bld,l->bd", x, weights)[:, None]
        posteriors = out_of_fold_posteriors(
            mixed, y, [speakers[i] for i in ids], len(labels), fit["l2"]
        )
        report["posteriors"] = dict(zip(ids, posteriors.tolist()))
    return report
