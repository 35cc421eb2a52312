"""The inference modes of EmoSLLM: the one table every module reads.

A mode says which task's prompt is used, where a transcript goes and
whether the model writes one itself. The recipe (``valid_modes``,
``test_modes``, ``selection_mode``), the prompts, the decoder, the
inference interface, ``emosllm-infer`` and the demo all look modes up here.

Authors
 * speechbrain-emosllm contributors 2026
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class InferenceMode:
    """What one inference mode asks of the model.

    Arguments
    ---------
    name : str
        The mode's name in YAML files, results and on the command line.
    task : str
        Whose prompt bank is used: ``"asr"``, ``"ser"`` or ``"joint"``.
    hint : bool
        The reference transcript goes in the user prompt.
    oracle_answer : bool
        The reference transcript opens the assistant's answer.
    transcribes : bool
        The model first writes a transcript (scored by WER).
    predicts_emotion : bool
        The mode ends with an emotion label.

    Example
    -------
    >>> MODES["prompt_hint"].needs_reference, MODES["asr"].predicts_emotion
    (True, False)
    """

    name: str
    task: str
    hint: bool = False
    oracle_answer: bool = False
    transcribes: bool = False
    predicts_emotion: bool = True

    @property
    def needs_reference(self):
        """Whether the caller must give the reference transcript."""
        return self.hint or self.oracle_answer


MODES = {
    mode.name: mode
    for mode in (
        # Emotion from the audio alone (SER prompt).
        InferenceMode("ser_only", "ser"),
        # SER prompt that also quotes the reference transcript.
        InferenceMode("prompt_hint", "ser", hint=True),
        # Joint answer whose transcript part is the reference.
        InferenceMode("joint_oracle", "joint", oracle_answer=True),
        # Joint answer: the model transcribes, then names the emotion.
        InferenceMode("joint_generated", "joint", transcribes=True),
        # Transcript only.
        InferenceMode("asr", "asr", transcribes=True, predicts_emotion=False),
    )
}
# What EmotionLLM and emosllm-infer run unless told otherwise.
DEFAULT_MODE = "joint_generated"
EMOTION_MODES = tuple(n for n, m in MODES.items() if m.predicts_emotion)
TRANSCRIBING_MODES = tuple(n for n, m in MODES.items() if m.transcribes)
# Modes that run on audio alone (what emosllm-infer offers).
AUDIO_ONLY_MODES = tuple(n for n, m in MODES.items() if not m.needs_reference)


def get_mode(name):
    """The mode called ``name``, or a ValueError listing the known ones.

    Arguments
    ---------
    name : str
        A mode name.

    Returns
    -------
    InferenceMode

    Example
    -------
    >>> get_mode("joint_oracle").task
    'joint'
    >>> get_mode("joint")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Unknown mode 'joint'; use one of ser_only, prompt_hint, ...
    """
    if name not in MODES:
        raise ValueError(
            f"Unknown mode '{name}'; use one of {', '.join(MODES)}."
        )
    return MODES[name]
