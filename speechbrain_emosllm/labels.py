"""Emotion class sets of the MSP-Podcast protocols.

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
