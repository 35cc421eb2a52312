"""A loss weight that changes over a phase (the curriculum's ASR weight).

Authors
 * speechbrain-emosllm contributors 2026
"""

import math


class LossWeightSchedule:
    """A weight that moves from ``initial_value`` to ``final_value``.

    Used for the ASR loss weight of phase 3, which decreases over training.

    Arguments
    ---------
    initial_value : float
        Weight at the start of training.
    final_value : float
        Weight at the end of training.
    shape : str
        ``"linear"``, ``"cosine"`` or ``"constant"``.

    Example
    -------
    >>> schedule = LossWeightSchedule(1.0, 0.2)
    >>> [round(schedule(p), 2) for p in (0.0, 0.5, 1.0)]
    [1.0, 0.6, 0.2]
    """

    def __init__(self, initial_value, final_value, shape="linear"):
        if shape not in ("linear", "cosine", "constant"):
            raise ValueError(f"Unknown schedule shape '{shape}'.")
        self.initial_value = initial_value
        self.final_value = final_value
        self.shape = shape

    def __call__(self, progress):
        """Weight at ``progress`` (0 at the start, 1 at the end).

        Arguments
        ---------
        progress : float
            Fraction of training done.

        Returns
        -------
        float
        """
        progress = min(max(progress, 0.0), 1.0)
        if self.shape == "constant":
            return self.initial_value
        if self.shape == "cosine":
            progress = 0.5 * (1 - math.cos(math.pi * progress))
        return self.initial_value + progress * (
            self.final_value - self.initial_value
        )
