"""Stacking: out-of-fold token posteriors for the training clips.

The utterance token (``PosteriorToken``) is a probe fitted on the training
clips, so on those clips it is over-confident, and copying it is always
right: the LLM learns to relay it. A stacked phase (``out_of_fold_token:
True``) gives each training clip the posterior of a probe fitted without
the clip's speaker (``out_of_fold_posteriors``), written next to the
token fit (``POSTERIORS_FILE``) and carried by the training batches as
``token_posterior`` (``attach_posteriors``); valid and test clips keep the
token fitted on every training speaker. ``token_dropout`` (the
``PosteriorToken``'s) adds training clips whose token says nothing.

Authors
 * speechbrain-emosllm contributors 2026
"""

import json
import os

import speechbrain as sb
import torch

from speechbrain_emosllm.linear_probe import train_probes
from speechbrain_emosllm.utterance_token import PosteriorToken

POSTERIORS_FILE = "out_of_fold_posteriors.json"


def out_of_fold_posteriors(x, y, groups, n_classes, l2, seed=0):
    """Each clip's posterior from a probe fitted without the clip's group.

    Stacking: the token fitted on every training clip is over-confident on
    those clips (copying it is always right there), so the training clips
    get the posteriors of probes that did not see their speaker, with the
    token's L2 penalty and layer weighting (as the token fit chose them).

    Arguments
    ---------
    x : torch.Tensor
        (utterances, 1, width) pooled frames of the token's layer mix.
    y : torch.Tensor
        (utterances,) class indices.
    groups : list of str
        Each clip's group (its speaker); at least two groups.
    n_classes : int
        Number of classes.
    l2 : float
        The probes' L2 penalty.
    seed : int
        Seed of each probe's initialisation.

    Returns
    -------
    torch.Tensor
        (utterances, n_classes).

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> y = torch.arange(40) % 2; x = torch.randn(40, 1, 3)
    >>> x[:, 0, 0] += 4 * y
    >>> p = out_of_fold_posteriors(x, y, ["a"] * 20 + ["b"] * 20, 2, 1e-3)
    >>> p.shape, (p.argmax(-1) == y).float().mean().item() > 0.9
    (torch.Size([40, 2]), True)
    """
    return posteriors_per_penalty(x, y, groups, n_classes, [l2], seed)[0]


def posteriors_per_penalty(x, y, groups, n_classes, penalties, seed=0):
    """``out_of_fold_posteriors`` for several L2 penalties, fitted at once.

    Every (held-out group, penalty) probe is fitted in one batched
    optimisation (``linear_probe.train_probes``).

    Arguments
    ---------
    x : torch.Tensor
        (utterances, 1, width) pooled frames.
    y : torch.Tensor
        (utterances,) class indices.
    groups : list of str
        Each clip's group; at least two groups.
    n_classes : int
        Number of classes.
    penalties : list of float
        L2 penalties.
    seed : int
        Seed of each probe's initialisation.

    Returns
    -------
    torch.Tensor
        (penalties, utterances, n_classes).

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> y = torch.arange(40) % 2; x = torch.randn(40, 1, 3)
    >>> p = posteriors_per_penalty(x, y, ["a", "b"] * 20, 2, [1e-3, 1.0])
    >>> p.shape
    torch.Size([2, 40, 2])
    """
    names = sorted(set(groups))
    if len(names) < 2:
        raise ValueError(
            f"out_of_fold_token needs two or more speakers, not {names}"
        )
    held = torch.tensor([[group == name for group in groups] for name in names])
    masks = (~held).repeat(len(penalties), 1)
    probes = train_probes(
        x, y, masks, n_classes, [l2 for l2 in penalties for _ in names], seed
    )
    posteriors = torch.empty(len(penalties), len(y), n_classes)
    with torch.no_grad():
        for index, probe in enumerate(probes):
            rows = held[index % len(names)]
            posteriors[index // len(names), rows] = probe(x[rows]).softmax(-1)
    return posteriors


def check_stacking(hparams):
    """Whether the phase stacks (``out_of_fold_token``); checks it can.

    Arguments
    ---------
    hparams : dict
        Phase hyperparameters.

    Returns
    -------
    bool

    Example
    -------
    >>> check_stacking({"out_of_fold_token": False})
    False
    >>> from types import SimpleNamespace
    >>> check_stacking({"out_of_fold_token": True,
    ...                 "qpmapper": SimpleNamespace(utterance_token=None)})
    Traceback (most recent call last):
    ...
    ValueError: out_of_fold_token: True needs a PosteriorToken utterance_token
    """
    if not hparams.get("out_of_fold_token"):
        return False
    if not isinstance(hparams["qpmapper"].utterance_token, PosteriorToken):
        raise ValueError(
            "out_of_fold_token: True needs a PosteriorToken utterance_token"
        )
    return True


def speaker_groups(data):
    """Clip id -> speaker (``spk_id``) of the training clips, or None.

    Arguments
    ---------
    data : DynamicItemDataset
        The training set.

    Returns
    -------
    dict or None
        None when the manifest has no ``spk_id`` field: the caller says
        what needed it.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> speaker_groups(DynamicItemDataset({"u1": {"spk_id": "03"}}))
    {'u1': '03'}
    >>> speaker_groups(DynamicItemDataset({"u1": {}})) is None
    True
    """
    try:
        with data.output_keys_as(["id", "spk_id"]):
            return {item["id"]: item["spk_id"] for item in data}
    except KeyError:
        return None


def read_posteriors(hparams):
    """The out-of-fold posteriors written when the token was fitted.

    Arguments
    ---------
    hparams : dict
        Phase hyperparameters (``output_folder``).

    Returns
    -------
    dict
        Clip id -> list of floats.
    """
    path = os.path.join(hparams["output_folder"], POSTERIORS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} is missing: out_of_fold_token was set on a phase whose "
            "token was fitted without it; start the phase afresh."
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def attach_posteriors(data, posteriors):
    """Adds each training clip's ``token_posterior`` to its batches.

    Arguments
    ---------
    data : DynamicItemDataset
        The training set.
    posteriors : dict
        Clip id -> list of floats (``read_posteriors``).

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> data = DynamicItemDataset({"u1": {}})
    >>> data.set_output_keys(["id"])
    >>> attach_posteriors(data, {"u1": [0.25, 0.75]})
    >>> data[0]["token_posterior"]
    tensor([0.2500, 0.7500])
    """

    @sb.utils.data_pipeline.takes("id")
    @sb.utils.data_pipeline.provides("token_posterior")
    def posterior_pipeline(utt_id):
        return torch.tensor(posteriors[utt_id])

    data.add_dynamic_item(posterior_pipeline)
    keys = list(data.pipeline.output_mapping)
    data.set_output_keys([*keys, "token_posterior"])
