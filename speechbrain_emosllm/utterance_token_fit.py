"""Fits the QPMapper's utterance token as a linear probe before a phase.

On RAVDESS the SER-only answer trailed a linear probe of the same frozen
frames (macro-F1 0.603 vs 0.689), and the loss decomposed into three
steps, each measured on the run's cache: the mapper's layer mix (near
uniform: P1/P2 on eSpeak hardly moved it) probes at 0.642 where the last
layer alone probes at 0.689; the utterance token's head, trained in
mini-batches next to the LLM, decides at 0.617 where the converged fit of
the same linear form on those frames reaches 0.642; the LLM reads the
token at -0.014. A head trained alone in mini-batches, with any learning
rate, weight decay, crop augmentation or class-vector form tried, stayed
at 0.60-0.67 (``benchmarks/anchor_head.py``).

So the token's classifier is fitted the way the probe is (full batch,
L2 penalty and layer chosen on valid), written into the mapper and frozen
for the phase: the LLM learns to read a converged classifier instead of
chasing a moving one. The token is laid out so that its cosine similarity
to each class name's embedding is proportional to that class's probe
logit (the pseudo-inverse of the class directions), or with
``qpmapper_token_classes`` to its posterior (``ClassPosteriorToken``,
which the LLM reads more faithfully), i.e. the label anchor's decision
*is* the probe's decision, in the LLM's word space.
Neither the paper nor SpeechBrain's speech-LLM recipe does this.

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
from speechbrain_emosllm.posterior_token import ClassPosteriorToken


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

    The last layer is the standard probe's input (``linear_probe``); the
    mapper's learned mix is what its queries read. Every single layer is
    not tried: on RAVDESS (train actors 01-12) the 2 valid actors picked
    layer 2 (valid macro-F1 0.697), which tests at 0.633 on actors 15-18
    where the last layer (valid 0.662) tests at 0.689.

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
    """
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
    """Makes the mapper's utterance token read out a fitted probe.

    Sets the layer weighting, the summary standardisation and the token
    projection so that the token is ``P @ probe_logits`` (see
    ``class_dual_basis``), or ``P @ softmax(probe_logits)`` with a
    ``ClassPosteriorToken``. Call ``QPMapper.freeze_utterance_token`` too,
    or training moves it again.

    Arguments
    ---------
    mapper : QPMapper
        With ``n_layers`` and ``utterance_token``.
    fit : dict
        ``fit_token_probe``'s result.
    class_embeddings : torch.Tensor
        (n_classes, hidden) class-name embeddings, in the probe's order.

    Example
    -------
    >>> from speechbrain_emosllm.qpmapper import QPMapper
    >>> m = QPMapper(4, 6, n_queries=2, d_model=8, nhead=2, num_layers=1,
    ...              n_layers=2, utterance_token=True).eval()
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
    if mapper.layer_sum is None or mapper.token_projection is None:
        raise ValueError(
            "utterance_token_fit needs a QPMapper with layer weighting "
            "(layer_weighting: True) and an utterance token "
            "(qpmapper_utterance_token: True)."
        )
    probe = fit["probe"]
    # log() of a clamped one-hot leaves the other layers ~1e-9 of the sum.
    weights = torch.tensor(fit["layer_weights"]).clamp(min=1e-9)
    mapper.layer_sum.logits.copy_(weights.log())
    norm = mapper.summary_norm
    norm.running_mean.copy_(probe.mean[0])
    norm.running_var.copy_(probe.std[0].pow(2) - norm.eps)
    dual = class_dual_basis(class_embeddings.to(probe.mean.device))
    projection = mapper.token_projection
    if isinstance(projection, ClassPosteriorToken):
        projection.classifier.load_state_dict(probe.linear.state_dict())
        projection.readout.weight.copy_(dual)
    else:
        projection.weight.copy_(dual @ probe.linear.weight)
        projection.bias.copy_(dual @ probe.linear.bias)


def fit_utterance_token(mapper, folder, datasets, labels, class_embeddings):
    """Fits, writes and freezes the utterance token of a fresh phase.

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

    Returns
    -------
    dict
        ``layer_weights``, ``l2`` and ``valid_macro_f1`` of the fit.
    """
    if mapper.layer_sum is None:  # before reading every cached clip
        raise ValueError("utterance_token_fit needs layer_weighting: True.")
    splits = {name: pooled_split(folder, d) for name, d in datasets.items()}
    n_layers = splits["train"][0].shape[1]
    current = mapper.layer_sum.layer_weights().cpu()
    fit = fit_token_probe(splits, labels, layer_candidates(current, n_layers))
    write_token_probe(mapper, fit, class_embeddings)
    mapper.freeze_utterance_token()
    return {key: value for key, value in fit.items() if key != "probe"}


def check_token_classes(mapper, labels):
    """Fails early when a posterior token's size is not the label count.

    Arguments
    ---------
    mapper : QPMapper
        The phase's mapper.
    labels : list of str
        The phase's class names.

    Example
    -------
    >>> from speechbrain_emosllm.qpmapper import QPMapper
    >>> m = QPMapper(4, 6, n_queries=2, d_model=8, nhead=2, num_layers=1,
    ...              utterance_token=True, token_classes=3)
    >>> check_token_classes(m, ["a", "b", "c"])
    >>> try:
    ...     check_token_classes(m, ["a", "b"])
    ... except ValueError as error:
    ...     print(str(error).split(": ")[-1])
    pass --qpmapper_token_classes=2.
    """
    classes = getattr(mapper.token_projection, "n_classes", None)
    if classes is not None and classes != len(labels):
        raise ValueError(
            f"qpmapper_token_classes is {classes}, but the label set has "
            f"{len(labels)} classes ({', '.join(labels)}): pass "
            f"--qpmapper_token_classes={len(labels)}."
        )
