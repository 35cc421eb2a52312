"""Emotion class sets of the recipes' protocols (MSP-Podcast, RAVDESS).

Authors
 * speechbrain-emosllm contributors 2026
"""

# MSP-Podcast EmoClass codes and their class names (O and X are not
# classes: other, and no agreement).
EMOTION_CODES = {
    "N": "Neutral",
    "H": "Happy",
    "S": "Sad",
    "A": "Angry",
    "U": "Surprise",
    "F": "Fear",
    "D": "Disgust",
    "C": "Contempt",
}
# Written by every training phase (and into exported model folders): the
# classes, in the order the model was trained on.
LABELS_FILE = "labels.json"
CLASS_SETS = {
    8: list(EMOTION_CODES.values()),
    4: ["Neutral", "Happy", "Sad", "Angry"],
}


def emotion_labels(n_classes):
    """Class names of a protocol, in their canonical order.

    Arguments
    ---------
    n_classes : int
        8 (Odyssey 2024 protocol) or 4 (Neutral, Happy, Sad, Angry).

    Returns
    -------
    list of str

    Example
    -------
    >>> emotion_labels(4)
    ['Neutral', 'Happy', 'Sad', 'Angry']
    """
    if n_classes not in CLASS_SETS:
        raise ValueError(f"n_classes must be 8 or 4, not {n_classes}.")
    return list(CLASS_SETS[n_classes])


# RAVDESS emotion codes (the `EE` field of a file name).
RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
# Label sets: RAVDESS emotion -> class name, and the class list in order.
# `msp` uses the MSP-Podcast class names and order (Contempt has no RAVDESS
# clips) so that an MSP-Podcast model can be tested on RAVDESS as is.
_MSP_NAMES = {
    "neutral": "Neutral",
    "calm": "Neutral",
    "happy": "Happy",
    "sad": "Sad",
    "angry": "Angry",
    "fearful": "Fear",
    "disgust": "Disgust",
    "surprised": "Surprise",
}
RAVDESS_LABEL_SETS = {
    "ravdess8": {e: e.capitalize() for e in RAVDESS_EMOTIONS.values()},
    "msp": _MSP_NAMES,
    "nhsa4": {e: _MSP_NAMES[e] for e in ("neutral", "happy", "sad", "angry")},
}


def ravdess_labels(label_set):
    """The class names of a RAVDESS label set, in their canonical order.

    Arguments
    ---------
    label_set : str
        ``ravdess8``, ``msp`` or ``nhsa4``.

    Returns
    -------
    list of str

    Example
    -------
    >>> ravdess_labels("nhsa4")
    ['Neutral', 'Happy', 'Sad', 'Angry']
    >>> ravdess_labels("ravdess8")[:3]
    ['Neutral', 'Calm', 'Happy']
    """
    if label_set not in RAVDESS_LABEL_SETS:
        raise ValueError(
            f"Unknown label_set '{label_set}': use one of "
            f"{', '.join(RAVDESS_LABEL_SETS)}."
        )
    if label_set == "msp":
        return emotion_labels(8)
    return list(dict.fromkeys(RAVDESS_LABEL_SETS[label_set].values()))


def class_count(label_set):
    """The number of classes of a RAVDESS label set (for phase YAMLs).

    Arguments
    ---------
    label_set : str
        ``ravdess8``, ``msp`` or ``nhsa4``.

    Returns
    -------
    int

    Example
    -------
    >>> class_count("ravdess8"), class_count("nhsa4")
    (8, 4)
    """
    return len(ravdess_labels(label_set))
