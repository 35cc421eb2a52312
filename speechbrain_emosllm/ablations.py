"""Test-time ablations of the QPMapper's outputs: what the answer reads.

``token_masked`` replaces the utterance token (the mapper's first output)
by its mean over the training clips, ``queries_masked`` the other query
outputs by theirs; the rest of the model is the trained phase. An answer
that stays where it was without a part does not read that part. (The
third ablation of the fold protocol, the predecessor without the emotion
phase, is a phase of 0 epochs: ``--number_of_epochs=0``.)

Authors
 * speechbrain-emosllm contributors 2026
"""

import contextlib

import speechbrain as sb
import torch

ABLATIONS = ("token_masked", "queries_masked")


def ablated_positions(name, n_queries, token_index):
    """Indices of the outputs an ablation replaces.

    Arguments
    ---------
    name : str
        One of ``ABLATIONS``.
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
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation '{name}': use one of {ABLATIONS}")
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


def run_ablations(brain, names, train_data, test_sets, loader_kwargs):
    """Tests every ablation in ``names`` on every test set, ``ser_only``.

    Reports go to ``test_<set>_<ablation>/`` beside the set's own.

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
