"""Test-time ablations of the QPMapper's outputs: what the answer reads.

``token_masked`` replaces the utterance token (the mapper's first output)
by its mean over the training clips, ``queries_masked`` the other query
outputs by theirs; the rest of the model is the trained phase. An answer
that stays where it was without a part does not read that part.
``no_phase_training`` tests the predecessor with the fitted token, before
the phase trains.

Authors
 * speechbrain-emosllm contributors 2026
"""

import contextlib

import speechbrain as sb
import torch

OUTPUT_ABLATIONS = ("token_masked", "queries_masked")
UNTRAINED = "no_phase_training"
ABLATIONS = (*OUTPUT_ABLATIONS, UNTRAINED)


def ablated_positions(name, n_queries, token_index):
    """Indices of the outputs an ablation replaces.

    Arguments
    ---------
    name : str
        One of ``OUTPUT_ABLATIONS``.
    n_queries : int
        Outputs of the mapper.
    token_index : int or None
        Position of the utterance token (``QPMapper.utterance_token_index``).

    Returns
    -------
    list of int

    Example
    -------
    >>> ablated_positions("token_masked", 4, 0)
    [0]
    >>> ablated_positions("queries_masked", 4, 0)
    [1, 2, 3]
    """
    if token_index is None:
        raise ValueError(f"ablation {name} needs a mapper with a token")
    if name == "token_masked":
        return [token_index]
    return [i for i in range(n_queries) if i != token_index]


@torch.no_grad()
def mean_outputs(brain, data, loader_kwargs):
    """The mapper's outputs averaged over the clips of ``data``.

    Arguments
    ---------
    brain : EmoSLLM
        With the checkpoint to ablate loaded.
    data : DynamicItemDataset
        The training clips.
    loader_kwargs : dict
        Data loader options.

    Returns
    -------
    torch.Tensor
        (n_queries, width).
    """
    brain.modules.eval()
    loader = brain.make_dataloader(data, sb.Stage.TEST, **loader_kwargs)
    total, count = 0.0, 0
    for batch in loader:
        out = brain.compute_forward(batch, sb.Stage.TEST).float()
        total = total + out.sum(0)
        count += out.shape[0]
    return total / count


@contextlib.contextmanager
def replaced_outputs(mapper, positions, values):
    """Within the block, the mapper's outputs at ``positions`` are fixed.

    Every clip gets ``values`` at those positions.

    Example
    -------
    >>> mapper = torch.nn.Linear(2, 2, bias=False)
    >>> x = torch.ones(1, 3, 2)
    >>> with replaced_outputs(mapper, [0], torch.full((3, 2), 7.0)):
    ...     out = mapper(x)
    >>> out[0, 0].tolist(), torch.equal(out[0, 1:], mapper(x)[0, 1:])
    ([7.0, 7.0], True)
    """

    def hook(module, inputs, output):
        output = output.clone()
        output[:, positions] = values[positions].to(output)
        return output

    handle = mapper.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def run_untrained_ablation(brain, names, test_sets, loader_kwargs, fresh):
    """Checks ``names``; tests ``no_phase_training`` on a fresh phase.

    Called before the phase trains, so that a bad name fails first.

    Arguments
    ---------
    brain : EmoSLLM
        The phase's brain, warm-started and its token fitted.
    names : list of str
        Ablations (``test_ablations``).
    test_sets : dict
        Name -> DynamicItemDataset.
    loader_kwargs : dict
        The test loader's options.
    fresh : bool
        No checkpoint of this phase exists yet (a resumed phase has
        trained, and tested this before).
    """
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise ValueError(
            f"test_ablations: unknown {unknown}; use some of {ABLATIONS}"
        )
    mapper = brain.modules.qpmapper
    if set(names) & set(OUTPUT_ABLATIONS) and mapper.utterance_token is None:
        raise ValueError(
            "test_ablations: token_masked and queries_masked "
            "need a mapper with an utterance_token"
        )
    if fresh and UNTRAINED in names:
        for name, data in test_sets.items():
            brain.test(f"{name}_{UNTRAINED}", data, loader_kwargs, ["ser_only"])


def run_ablations(brain, names, train_data, test_sets, loader_kwargs):
    """Tests every output ablation in ``names`` on every test set.

    ``ser_only`` answers; reports go to ``test_<set>_<ablation>/`` beside
    the set's own.

    Arguments
    ---------
    brain : EmoSLLM
        A brain whose ``test`` has run (the best checkpoint is loaded).
    names : list of str
        Ablations.
    train_data : DynamicItemDataset
        Where the replacement means come from.
    test_sets : dict
        Name -> DynamicItemDataset.
    loader_kwargs : dict
        Data loader options (the test loader's).
    """
    names = [n for n in names if n in OUTPUT_ABLATIONS]
    if not names:
        return
    mapper = brain.modules.qpmapper
    means = mean_outputs(brain, train_data, loader_kwargs)
    for ablation in names:
        positions = ablated_positions(
            ablation, means.shape[0], mapper.utterance_token_index
        )
        for name, data in test_sets.items():
            with replaced_outputs(mapper, positions, means):
                brain.test(
                    f"{name}_{ablation}", data, loader_kwargs, ["ser_only"]
                )
