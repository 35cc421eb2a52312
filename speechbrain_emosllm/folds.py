"""Speaker-independent folds of RAVDESS and what is reported over them.

Actor lists are written as ``"13,15-18"`` (``parse_actors``).

EmoBox (Interspeech 2024) evaluates RAVDESS speech on six folds of four
test actors each (``EMOBOX_RAVDESS_FOLDS``, from its released fold files);
the other 20 actors train. Here two of the training actors are held out as
valid actors by a fixed rule (``valid_actors_for``) so that no test actor
ever chooses anything. ``summarise`` gives the mean and SD over folds of
accuracy (EmoBox's WA), balanced accuracy (UA) and macro-F1;
``paired_bootstrap`` the interval of a difference in macro-F1, resampling
test clips within folds (the same clips for both systems).

Authors
 * speechbrain-emosllm contributors 2026
"""

import random
import statistics

from speechbrain_emosllm.evaluate import score

EMOBOX_RAVDESS_FOLDS = (
    (1, 11, 20, 21),
    (4, 10, 12, 14),
    (8, 9, 19, 23),
    (3, 5, 7, 24),
    (2, 15, 16, 18),
    (6, 13, 17, 22),
)
METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


def parse_actors(value):
    """Actor numbers from ``"17,18"``, ``"19-24"``, ints or a list.

    Arguments
    ---------
    value : str or int or list
        Comma-separated numbers and ranges, or numbers.

    Returns
    -------
    list of int

    Example
    -------
    >>> parse_actors("13,15-17")
    [13, 15, 16, 17]
    >>> parse_actors([1, "02"])
    [1, 2]
    """
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    actors = []
    for part in str(value).replace(" ", "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            start, end = int(first), int(last or first)
        except ValueError:
            raise ValueError(
                f"Bad actor list '{value}': use numbers and ranges such as "
                "'13,15-18'."
            ) from None
        actors.extend(range(start, end + 1))
    return actors


def parse_folds(spec):
    """Test-actor groups from ``"emobox"``, ``"emobox:2,5"`` or groups.

    Arguments
    ---------
    spec : str
        ``emobox`` (all six folds), ``emobox:`` followed by fold numbers
        (1-6), or actor groups separated by ``;`` (``"1-4;5,6,7,8"``).

    Returns
    -------
    list of (str, list of int)
        Fold name and its test actors.

    Example
    -------
    >>> parse_folds("emobox:2,5")
    [('emobox2', [4, 10, 12, 14]), ('emobox5', [2, 15, 16, 18])]
    >>> parse_folds("1-4;13,14")
    [('actors_1-4', [1, 2, 3, 4]), ('actors_13-14', [13, 14])]
    """
    spec = spec.replace(" ", "")
    if spec == "emobox" or spec.startswith("emobox:"):
        numbers = spec.partition(":")[2]
        chosen = [int(n) for n in numbers.split(",")] if numbers else None
        chosen = chosen or list(range(1, 7))
        bad = [n for n in chosen if not 1 <= n <= len(EMOBOX_RAVDESS_FOLDS)]
        if bad:
            raise ValueError(f"--folds {spec}: EmoBox has folds 1-6, not {bad}")
        return [
            (f"emobox{n}", list(EMOBOX_RAVDESS_FOLDS[n - 1])) for n in chosen
        ]
    folds = []
    for group in filter(None, spec.split(";")):
        try:
            actors = sorted(parse_actors(group))
        except ValueError:
            raise ValueError(
                f"--folds {spec}: use 'emobox', 'emobox:2,5' or actor "
                "groups such as '1-4;5,6,7,8'"
            ) from None
        folds.append((f"actors_{min(actors)}-{max(actors)}", actors))
    return folds


def valid_actors_for(test_actors, available):
    """The fixed rule: the highest-numbered male and female training actor.

    RAVDESS's odd-numbered actors are male, even-numbered female; the two
    valid actors are the largest odd and the largest even number among the
    actors that are not tested, so the rule never looks at any score.

    Arguments
    ---------
    test_actors : list of int
    available : list of int
        Actors present in the data folder.

    Returns
    -------
    list of int

    Example
    -------
    >>> valid_actors_for([2, 15, 16, 18], range(1, 19))
    [14, 17]
    """
    train = [a for a in available if a not in set(test_actors)]
    odd = [a for a in train if a % 2]
    even = [a for a in train if not a % 2]
    if not odd or not even:
        raise ValueError(
            f"test actors {list(test_actors)} leave no male and female "
            "training actor for validation"
        )
    return sorted([max(even), max(odd)])


def check_folds_present(folds, available, folder):
    """Raises if a fold's test actors are not all in ``folder``.

    Example
    -------
    >>> check_folds_present([("f", [1, 20])], [1, 2], "/data")
    Traceback (most recent call last):
    ...
    ValueError: fold f: test actors [20] are not in /data (it has actors 1-2)
    """
    have = set(available)
    present = f"actors {min(have)}-{max(have)}" if have else "no Actor_XX/"
    for name, actors in folds:
        missing = [a for a in actors if a not in have]
        if missing:
            raise ValueError(
                f"fold {name}: test actors {missing} are not in {folder} "
                f"(it has {present})"
            )


def fold_scores(targets, predictions, classes):
    """Accuracy, balanced accuracy and macro-F1 of one fold's answers.

    Arguments
    ---------
    targets : dict
        Clip id -> reference label.
    predictions : dict
        Clip id -> predicted label (every clip of ``targets``).
    classes : list of str

    Returns
    -------
    dict

    Example
    -------
    >>> fold_scores({"a": "x", "b": "y"}, {"a": "x", "b": "x"}, ["x", "y"])
    {'accuracy': 0.5, 'balanced_accuracy': 0.5, 'macro_f1': 0.3333}
    """
    missing = sorted(set(targets) - set(predictions))
    if missing:
        raise ValueError(
            f"no prediction for {len(missing)} clips: {missing[:3]}"
        )
    ids = sorted(targets)
    result = score(
        [predictions[i] for i in ids], [targets[i] for i in ids], classes
    )
    return {key: result[key] for key in METRICS}


def summarise(folds):
    """Mean (and macro-F1 SD) over folds of every row of every fold.

    Arguments
    ---------
    folds : list of dict
        Each with ``rows``: row name -> ``fold_scores`` output.

    Returns
    -------
    dict
        Row name -> ``<metric>_mean``, ``macro_f1_sd`` and ``folds`` (the
        number of folds that have the row).

    Example
    -------
    >>> rows = [{"rows": {"a": {"accuracy": .5, "balanced_accuracy": .5,
    ...          "macro_f1": .4}}}, {"rows": {"a": {"accuracy": .7,
    ...          "balanced_accuracy": .7, "macro_f1": .6}}}]
    >>> summarise(rows)["a"]["macro_f1_mean"], summarise(rows)["a"]["folds"]
    (0.5, 2)
    """
    names = []
    for fold in folds:
        names += [n for n in fold["rows"] if n not in names]
    summary = {}
    for name in names:
        entries = [f["rows"][name] for f in folds if name in f["rows"]]
        row = {
            f"{m}_mean": round(statistics.mean(e[m] for e in entries), 4)
            for m in METRICS
        }
        f1 = [e["macro_f1"] for e in entries]
        row["macro_f1_sd"] = (
            round(statistics.stdev(f1), 4) if len(f1) > 1 else None
        )
        row["folds"] = len(entries)
        summary[name] = row
    return summary


def paired_bootstrap(folds, first, second, classes, draws=1000, seed=0):
    """Mean over folds of macro-F1(first) - macro-F1(second), resampled.

    Each draw resamples every fold's test clips with replacement (the same
    clips for both systems) and averages the folds' differences.

    Arguments
    ---------
    folds : list of dict
        Each with ``targets`` and ``predictions`` (row name -> clip id ->
        label).
    first, second : str
        Row names.
    classes : list of str
    draws : int
    seed : int

    Returns
    -------
    dict
        ``mean`` (the observed difference), ``ci95`` and ``draws``.

    Example
    -------
    >>> fold = {"targets": {"a": "x", "b": "y", "c": "y"},
    ...         "predictions": {"p": {"a": "x", "b": "y", "c": "y"},
    ...                         "q": {"a": "y", "b": "y", "c": "y"}}}
    >>> out = paired_bootstrap([fold], "p", "q", ["x", "y"], draws=50)
    >>> out["mean"], out["ci95"][1] <= 1.0, out["draws"]
    (0.6, True, 50)
    """
    rng = random.Random(seed)

    def difference(fold, ids):
        targets = [fold["targets"][i] for i in ids]
        values = [
            score([fold["predictions"][row][i] for i in ids], targets, classes)[
                "macro_f1"
            ]
            for row in (first, second)
        ]
        return values[0] - values[1]

    observed = statistics.mean(
        difference(f, sorted(f["targets"])) for f in folds
    )
    samples = []
    for _ in range(draws):
        total = 0.0
        for fold in folds:
            ids = sorted(fold["targets"])
            total += difference(fold, [rng.choice(ids) for _ in ids])
        samples.append(total / len(folds))
    samples.sort()
    low = samples[int(0.025 * (draws - 1))]
    high = samples[int(round(0.975 * (draws - 1)))]
    return {
        "mean": round(observed, 4),
        "ci95": [round(low, 4), round(high, 4)],
        "draws": draws,
    }
