"""The frozen-upstream baseline: a linear probe of mean-pooled frames.

The standard way to ask how much emotion a frozen encoder's frames carry
(as in SUPERB-style SER benchmarks) is one linear layer on their mean over
time; with a learned softmax weighting of the layers it also uses the
middle layers, where emotion is often strongest. The speech LLM reads the
very same frames, so the probe is the bar its SER-only answer should clear
on the same split.

Authors
 * speechbrain-emosllm contributors 2026
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_emosllm.features import load_cached_features
from speechbrain_emosllm.metrics import EmotionMetrics

# Full-batch Adam steps of every probe fit.
PROBE_STEPS = 300


def pooled_frames(folder, clips):
    """Mean over time of each utterance's cached frames, layer by layer.

    Every layer is layer-normalised (no affine) frame by frame first, as in
    ``WeightedLayerSum``.

    Arguments
    ---------
    folder : str
        Keyed feature-cache folder.
    clips : list of (str, str)
        Utterance ids and audio files to read.

    Returns
    -------
    torch.Tensor
        (utterances, layers, width); one layer for last-layer caches.
    """
    return torch.stack(
        [pool_frames(load_cached_features(folder, u, w)) for u, w in clips]
    )


def pool_frames(frames):
    """One clip's probe input: each frame layer-normalised, then averaged.

    Arguments
    ---------
    frames : torch.Tensor
        (time, layers, width), or (time, width) for the last layer only.

    Returns
    -------
    torch.Tensor
        (layers, width); one layer for (time, width) frames.

    Example
    -------
    >>> pool_frames(torch.randn(7, 3, 4)).shape, pool_frames(
    ...     torch.randn(7, 4)).shape
    (torch.Size([3, 4]), torch.Size([1, 4]))
    """
    if frames.dim() == 2:
        frames = frames[:, None]
    return F.layer_norm(frames, frames.shape[-1:]).mean(0)


def pooled_split(folder, dataset):
    """``pooled_frames`` of a dataset's clips, their classes and ids.

    Arguments
    ---------
    folder : str
        Keyed feature-cache folder holding every clip of ``dataset``.
    dataset : speechbrain.dataio.dataset.DynamicItemDataset
        With the ``id``, ``wav`` and ``emo_index`` keys (``dataio_prepare``).

    Returns
    -------
    (torch.Tensor, torch.Tensor, list of str)
        Pooled frames (utterances, layers, width), class indices, ids.
    """
    with dataset.output_keys_as(["id", "wav", "emo_index"]):
        items = list(dataset)
    ids = [item["id"] for item in items]
    y = torch.tensor([item["emo_index"] for item in items])
    clips = [(item["id"], item["wav"]) for item in items]
    return pooled_frames(folder, clips), y, ids


class LinearProbe(nn.Module):
    """One linear layer on standardised pooled frames of chosen layers.

    Arguments
    ---------
    mean, std : torch.Tensor
        (layers, width) training statistics used to standardise inputs.
    n_classes : int
        Number of classes.
    weighted_layers : bool
        Learn a softmax weighting of the layers; otherwise read the last.

    Example
    -------
    >>> probe = LinearProbe(torch.zeros(3, 8), torch.ones(3, 8), 4, True)
    >>> probe(torch.randn(5, 3, 8)).shape
    torch.Size([5, 4])
    """

    def __init__(self, mean, std, n_classes, weighted_layers=False):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.weighted_layers = weighted_layers
        self.layer_logits = nn.Parameter(torch.zeros(mean.shape[0]))
        self.linear = nn.Linear(mean.shape[1], n_classes)

    def forward(self, pooled):
        """Class logits of (batch, layers, width) pooled frames."""
        x = (pooled - self.mean) / self.std
        if self.weighted_layers:
            x = torch.einsum("bld,l->bd", x, self.layer_logits.softmax(-1))
        else:
            x = x[:, -1]
        return self.linear(x)


def train_probe(
    train_x, train_y, n_classes, weighted_layers, l2, steps=PROBE_STEPS
):
    """Fits a ``LinearProbe`` with full-batch Adam and an L2 penalty.

    Arguments
    ---------
    train_x : torch.Tensor
        (utterances, layers, width) pooled frames.
    train_y : torch.Tensor
        (utterances,) class indices.
    n_classes : int
        Number of classes.
    weighted_layers : bool
        Learn a weighting of the layers.
    l2 : float
        Weight of the squared-norm penalty on the linear weights.
    steps : int
        Full-batch optimisation steps.

    Returns
    -------
    LinearProbe

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(40, 2, 6); y = (x[:, -1, 0] > 0).long()
    >>> probe = train_probe(x, y, 2, False, 1e-4, steps=200)
    >>> (probe(x).argmax(-1) == y).float().mean().item() > 0.9
    True
    """
    mean = train_x.mean(0)
    std = train_x.std(0).clamp(min=1e-5)
    probe = LinearProbe(mean, std, n_classes, weighted_layers)
    optimizer = torch.optim.Adam(probe.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(train_x), train_y)
        loss = loss + l2 * probe.linear.weight.pow(2).sum()
        loss.backward()
        optimizer.step()
    return probe.eval()


def train_probes(train_x, train_y, masks, n_classes, penalties, seed=0):
    """Fits many last-layer probes at once, each on its own clips.

    Each (mask, penalty) pair gets ``train_probe``'s fit (``weighted_layers``
    False) after ``torch.manual_seed(seed)``: the same normalisation, the
    same initial weights, the same full-batch Adam steps. Written by hand
    because nothing batches independent fits: the probes share no
    parameter and Adam updates element by element, so one optimisation of
    their summed losses takes every probe through the steps it takes
    alone (up to float rounding), in one pass instead of one per probe
    (grouped cross-validation fits 60 per candidate: a minute on 2 cores
    one by one).

    Arguments
    ---------
    train_x : torch.Tensor
        (utterances, layers, width) pooled frames; the last layer is read.
    train_y : torch.Tensor
        (utterances,) class indices.
    masks : torch.Tensor
        (probes, utterances) bool, each probe's training clips.
    n_classes : int
        Number of classes.
    penalties : list of float
        Each probe's L2 penalty.
    seed : int
        Seed of the (shared) initialisation.

    Returns
    -------
    list of LinearProbe

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(40, 1, 6); y = (x[:, -1, 0] > 0).long()
    >>> masks = torch.stack([torch.arange(40) < 30, torch.arange(40) >= 10])
    >>> probes = train_probes(x, y, masks, 2, [1e-3, 1e-2])
    >>> _ = torch.manual_seed(0)
    >>> alone = train_probe(x[masks[1]], y[masks[1]], 2, False, 1e-2)
    >>> torch.allclose(probes[1](x), alone(x), atol=1e-4)
    True
    """
    # Each probe's statistics exactly as train_probe computes them.
    stats = [
        (train_x[mask].mean(0), train_x[mask].std(0).clamp(min=1e-5))
        for mask in masks
    ]
    mean = torch.stack([m[-1] for m, _ in stats])  # (probes, width)
    std = torch.stack([s[-1] for _, s in stats])
    z = (train_x[None, :, -1] - mean[:, None]) / std[:, None]
    weight_of = masks.float() / masks.sum(1, keepdim=True)
    torch.manual_seed(seed)
    start = LinearProbe(stats[0][0], stats[0][1], n_classes).linear
    weight = start.weight.detach().repeat(len(masks), 1, 1).requires_grad_()
    bias = start.bias.detach().repeat(len(masks), 1).requires_grad_()
    l2 = torch.tensor(penalties, dtype=weight.dtype)
    optimizer = torch.optim.Adam([weight, bias], lr=0.01)
    targets = train_y.repeat(len(masks))
    for _ in range(PROBE_STEPS):
        optimizer.zero_grad()
        logits = torch.baddbmm(bias[:, None], z, weight.transpose(1, 2))
        ce = F.cross_entropy(logits.flatten(0, 1), targets, reduction="none")
        loss = (ce.view_as(weight_of) * weight_of).sum(1)
        loss = loss + l2 * weight.pow(2).sum((1, 2))
        loss.sum().backward()
        optimizer.step()
    probes = []
    with torch.random.fork_rng():  # building them draws no seed's numbers
        for index, (mean_i, std_i) in enumerate(stats):
            probe = LinearProbe(mean_i, std_i, n_classes)
            probe.linear.weight.data = weight[index].detach().clone()
            probe.linear.bias.data = bias[index].detach().clone()
            probes.append(probe.eval())
    return probes


def probe_scores(probe, x, y, ids, labels):
    """Accuracy and macro-F1 of a probe, computed by ``EmotionMetrics``.

    Arguments
    ---------
    probe : LinearProbe
        A fitted probe.
    x, y : torch.Tensor
        Pooled frames and class indices.
    ids : list of str
        Utterance ids.
    labels : list of str
        Class names.

    Returns
    -------
    dict
        ``accuracy``, ``macro_f1`` and the rest of ``summarize()``, and
        ``predictions`` (id -> label).

    Example
    -------
    >>> x = torch.randn(4, 1, 3); y = torch.tensor([0, 1, 0, 1])
    >>> probe = LinearProbe(torch.zeros(1, 3), torch.ones(1, 3), 2)
    >>> probe_scores(probe, x, y, list("abcd"), ["A", "B"])["count"]
    4
    """
    metrics = EmotionMetrics(labels)
    with torch.no_grad():
        predicted = [labels[i] for i in probe(x).argmax(-1).tolist()]
    metrics.append(ids, predicted, [labels[i] for i in y.tolist()])
    return {**metrics.summarize(), "predictions": dict(zip(ids, predicted))}


def select_on_valid(splits, labels, weighted_layers, penalties, seed=0):
    """Trains one probe per L2 penalty and keeps the best on valid.

    Arguments
    ---------
    splits : dict
        ``train`` and ``valid`` -> (x, y, ids).
    labels : list of str
        Class names.
    weighted_layers : bool
        Learn a weighting of the layers.
    penalties : list of float
        L2 penalties to try (the first wins a tie).
    seed : int
        Seed of each probe's initialisation.

    Returns
    -------
    (float, float, LinearProbe)
        Valid macro-F1, L2 penalty and the probe.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(30, 1, 4); y = (x[:, 0, 0] > 0).long()
    >>> data = {s: (x, y, [str(i) for i in range(30)])
    ...         for s in ("train", "valid")}
    >>> f1, l2, probe = select_on_valid(data, ["A", "B"], False, [1e-3, 10])
    >>> f1 > 0.8, l2
    (True, 0.001)
    """
    best = None
    x, y, _ = splits["train"]
    for l2 in penalties:
        torch.manual_seed(seed)
        probe = train_probe(x, y, len(labels), weighted_layers, l2)
        valid = probe_scores(probe, *splits["valid"], labels)["macro_f1"]
        if best is None or valid > best[0]:
            best = (valid, l2, probe)
    return best


def select_and_test(splits, labels, weighted_layers, penalties, seed=0):
    """Trains one probe per L2 penalty, keeps the best on valid, tests it.

    Arguments
    ---------
    splits : dict
        ``train``, ``valid``, ``test`` -> (x, y, ids).
    labels : list of str
        Class names.
    weighted_layers : bool
        Learn a weighting of the layers.
    penalties : list of float
        L2 penalties to try.
    seed : int
        Seed of the initialisation.

    Returns
    -------
    dict
        ``accuracy``, ``macro_f1`` (test), ``valid_macro_f1``, ``l2``,
        ``predictions`` (test id -> label) and, with ``weighted_layers``,
        the learned ``layer_weights``.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(30, 2, 4); y = (x[:, 0, 0] > 0).long()
    >>> data = {s: (x, y, [str(i) for i in range(30)])
    ...         for s in ("train", "valid", "test")}
    >>> out = select_and_test(data, ["A", "B"], True, [1e-3])
    >>> out["accuracy"] > 0.8, len(out["layer_weights"])
    (True, 2)
    """
    valid_f1, l2, probe = select_on_valid(
        splits, labels, weighted_layers, penalties, seed
    )
    test = probe_scores(probe, *splits["test"], labels)
    result = {
        "accuracy": test["accuracy"],
        "macro_f1": test["macro_f1"],
        "valid_macro_f1": valid_f1,
        "l2": l2,
        "predictions": test["predictions"],
    }
    if weighted_layers:
        weights = probe.layer_logits.detach().softmax(-1)
        result["layer_weights"] = [round(w, 3) for w in weights.tolist()]
    return result


PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
