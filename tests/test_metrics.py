"""Emotion metrics and the loss-weight schedule against known answers."""

import json
import os

import pytest

from speechbrain_emosllm import EmotionMetrics, LossWeightSchedule


def test_metrics_match_hand_computed_values(tmp_path):
    labels = ["Neutral", "Happy", "Sad"]
    metrics = EmotionMetrics(labels)
    metrics.append(
        ["a", "b", "c", "d"],
        ["Neutral", "Happy", "Happy", "Sad"],
        ["Neutral", "Happy", "Sad", "Sad"],
        free_form=["Neutral", None, "Happy", None],
    )
    stats = metrics.write_report(str(tmp_path / "r"), "demo")
    assert stats["accuracy"] == pytest.approx(0.75)
    # F1: Neutral 1, Happy 2/3, Sad 2/3.
    assert stats["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert stats["f1"]["Happy"] == pytest.approx(0.6667, abs=1e-4)
    assert stats["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert stats["invalid_rate"] == pytest.approx(0.5)
    assert stats["free_form_accuracy"] == pytest.approx(0.25)
    for ext in ("json", "txt", "png"):
        assert os.path.getsize(tmp_path / f"r.{ext}") > 0
    assert json.loads((tmp_path / "r.json").read_text()) == stats
    assert "Sad" in (tmp_path / "r.txt").read_text()


def test_macro_f1_ignores_classes_absent_from_the_references():
    metrics = EmotionMetrics(["A", "B", "C"])
    metrics.append(["x", "y"], ["A", "B"], ["A", "B"])
    assert metrics.summarize()["macro_f1"] == pytest.approx(1.0)


def test_asr_weight_schedule_decreases():
    schedule = LossWeightSchedule(1.0, 0.1, "linear")
    values = [schedule(p / 10) for p in range(11)]
    assert values[0] == pytest.approx(1.0)
    assert values[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(values, values[1:]))
    cosine = LossWeightSchedule(1.0, 0.0, "cosine")
    assert cosine(0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="Unknown schedule shape"):
        LossWeightSchedule(1, 0, "steps")
