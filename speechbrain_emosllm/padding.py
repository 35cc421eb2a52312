"""Tensor padding helpers of the speech LLM's batches.

Authors
 * speechbrain-emosllm contributors 2026
"""

import torch


def to_left_padding(ids, lengths, pad_value):
    """Moves right-padded rows to the right edge (left padding).

    Arguments
    ---------
    ids : torch.Tensor
        (batch, time) right-padded values.
    lengths : torch.Tensor
        Absolute lengths of the rows.
    pad_value : int
        Value written in the padding.

    Returns
    -------
    torch.Tensor
        The same rows, left-padded.

    Example
    -------
    >>> to_left_padding(torch.tensor([[1, 2, 3], [4, 0, 0]]),
    ...                 torch.tensor([3, 1]), 0)
    tensor([[1, 2, 3],
            [0, 0, 4]])
    """
    time = ids.shape[1]
    source = torch.arange(time, device=ids.device)[None] - (
        time - lengths[:, None]
    )
    shifted = ids.gather(1, source.clamp(min=0))
    return shifted.masked_fill(source < 0, pad_value)


def relative_to_absolute(relative, max_len):
    """Converts SpeechBrain relative lengths to integer lengths.

    Arguments
    ---------
    relative : torch.Tensor
        Relative lengths in [0, 1].
    max_len : int
        Padded length of the batch.

    Returns
    -------
    torch.Tensor
        Integer lengths.

    Example
    -------
    >>> relative_to_absolute(torch.tensor([1.0, 0.5]), 4)
    tensor([4, 2])
    """
    return torch.round(relative * max_len).long()
