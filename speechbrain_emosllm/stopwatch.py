"""Where a phase's time goes: wall-clock seconds of its named steps.

``speechbrain_emosllm.recipe.run_phase`` times its steps (encoding, token
fit, training, tests, ablations) with a ``Stopwatch`` and writes them,
with the Brain's per-stage seconds (each epoch's training and validation,
each test and its modes), to ``<output_folder>/phase_seconds.json``.
SpeechBrain's profiler measures operators, not a recipe's steps; a phase
needs only a few wall-clock sums, so they are kept here.

Authors
 * speechbrain-emosllm contributors 2026
"""

import contextlib
import json
import time

PHASE_SECONDS_FILE = "phase_seconds.json"


class Stopwatch:
    """Wall-clock seconds of named steps, summed over repeats, in order.

    Example
    -------
    >>> watch = Stopwatch()
    >>> with watch("encode"):
    ...     pass
    >>> with watch("encode"):
    ...     pass
    >>> list(watch.seconds), 0.0 <= watch.seconds["encode"] < 1.0
    (['encode'], True)
    """

    def __init__(self):
        self.seconds = {}

    @contextlib.contextmanager
    def __call__(self, name):
        """Adds the seconds the ``with`` block takes to step ``name``."""
        began = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - began
            self.seconds[name] = self.seconds.get(name, 0.0) + spent

    def rounded(self):
        """The seconds of every step, to 0.1 s.

        Example
        -------
        >>> watch = Stopwatch()
        >>> watch.seconds = {"fit": 12.345}
        >>> watch.rounded()
        {'fit': 12.3}
        """
        return {name: round(s, 1) for name, s in self.seconds.items()}


def write_phase_seconds(path, steps, stages):
    """Writes a phase's ``phase_seconds.json``.

    Arguments
    ---------
    path : str
        The file.
    steps : dict
        Step name -> seconds (``Stopwatch.rounded``).
    stages : list of dict
        The Brain's stages in order (``EmoSLLM.stage_seconds``).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), PHASE_SECONDS_FILE)
    >>> write_phase_seconds(path, {"training": 3.0},
    ...                     [{"stage": "train", "epoch": 1, "seconds": 3.0}])
    >>> json.load(open(path))["steps"]
    {'training': 3.0}
    """
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"steps": steps, "stages": stages}, f, indent=2)
