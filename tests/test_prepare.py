"""MSP-Podcast preparation on a fabricated release with bad rows."""

import json
import logging
import os

import pytest
from msp_podcast_prepare import main, prepare_msp_podcast

from speechbrain_emosllm.testing import write_tone_clips

HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
ROWS = [
    # name, class, speaker, split, what to do with the audio/transcript
    ("MSP-PODCAST_0001_0001", "N", "30", "Train", "ok"),
    ("MSP-PODCAST_0001_0002", "H", "30", "Train", "ok"),
    ("MSP-PODCAST_0001_0003", "C", "Unknown", "Train", "ok"),
    ("MSP-PODCAST_0001_0004", "O", "31", "Train", "ok"),
    ("MSP-PODCAST_0001_0005", "X", "31", "Train", "ok"),
    ("MSP-PODCAST_0001_0006", "A", "31", "Train", "missing"),
    ("MSP-PODCAST_0001_0007", "S", "32", "Train", "empty"),
    ("MSP-PODCAST_0001_0008", "S", "32", "Train", "corrupt"),
    ("MSP-PODCAST_0001_0009", "S", "32", "Train", "no transcript"),
    ("MSP-PODCAST_0002_0001", "S", "40", "Development", "ok"),
    ("MSP-PODCAST_0002_0002", "U", "40", "Test1", "ok"),
    ("MSP-PODCAST_0002_0004", "A", "40", "Test1", "ok"),
    ("MSP-PODCAST_0002_0003", "A", "41", "Test2", "ok"),
    ("MSP-PODCAST_test3_0001", "N", "Unknown", "Test3", "ok"),
]


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "MSP-Podcast"
    for sub in ("Audios", "Labels", "Transcripts"):
        (root / sub).mkdir(parents=True)
    lines = [HEADER]
    for index, (name, code, speaker, split, state) in enumerate(ROWS):
        lines.append(f"{name}.wav,{code},3,4,3,{speaker},Male,{split}\n")
        wav = root / "Audios" / f"{name}.wav"
        if state in ("ok", "no transcript"):
            write_tone_clips(str(root / "Audios"), [(name, 0.5, index % 4)])
        elif state == "empty":
            wav.write_bytes(b"")
        elif state == "corrupt":
            wav.write_bytes(b"RIFF not really a wave file")
        if state != "no transcript" and split != "Test3":
            (root / "Transcripts" / f"{name}.txt").write_text(
                f"words of {name}\n"
            )
    (root / "Labels" / "labels_consensus.csv").write_text("".join(lines))
    return root


def load(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return json.load(f)


def test_eight_class_manifests_skip_bad_rows_and_name_them(
    release, tmp_path, caplog
):
    out = tmp_path / "manifests"
    with caplog.at_level(logging.WARNING):
        counts = prepare_msp_podcast(str(release), str(out))
    assert counts == {"Train": 3, "Development": 1, "Test1": 2, "Test2": 1}
    train = load(out, "train.json")
    assert sorted(train) == [
        "MSP-PODCAST_0001_0001",
        "MSP-PODCAST_0001_0002",
        "MSP-PODCAST_0001_0003",
    ]
    item = train["MSP-PODCAST_0001_0003"]
    assert item["emo"] == "Contempt" and item["spk_id"] == "Unknown"
    assert item["wrd"] == "words of MSP-PODCAST_0001_0003"
    assert item["duration"] == pytest.approx(0.5)
    assert os.path.isfile(item["wav"])
    assert load(out, "test.json")["MSP-PODCAST_0002_0002"]["emo"] == "Surprise"
    assert "MSP-PODCAST_0002_0001" in load(out, "valid.json")
    assert "MSP-PODCAST_0002_0003" in load(out, "test2.json")
    log = caplog.text
    for name, reason in (
        ("0006", "missing audio"),
        ("0007", "empty audio"),
        ("0008", "unreadable audio"),
        ("0009", "missing or empty transcript"),
    ):
        assert f"MSP-PODCAST_0001_{name}: {reason}" in log
    assert "Skipped 1 rows: missing audio" in log
    assert "Skipped 2 rows: not a class of the protocol" in log


def test_four_class_protocol_keeps_neutral_happy_sad_angry(release, tmp_path):
    out = tmp_path / "four"
    prepare_msp_podcast(str(release), str(out), n_classes=4)
    train = load(out, "train.json")
    assert {item["emo"] for item in train.values()} == {"Neutral", "Happy"}
    assert list(load(out, "test.json")) == ["MSP-PODCAST_0002_0004"]


def test_rerun_skips_work_and_new_options_redo_it(release, tmp_path):
    out = tmp_path / "manifests"
    assert prepare_msp_podcast(str(release), str(out))
    assert prepare_msp_podcast(str(release), str(out)) == {}
    assert prepare_msp_podcast(str(release), str(out), n_classes=4)


def test_command_line(release, tmp_path):
    out = tmp_path / "cli"
    main(
        [
            "--data_folder",
            str(release),
            "--save_folder",
            str(out),
            "--n_classes",
            "4",
        ]
    )
    assert os.path.isfile(out / "train.json")


def test_wrong_folders_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_folder not found"):
        prepare_msp_podcast(str(tmp_path / "nope"), str(tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match="labels_consensus.csv"):
        prepare_msp_podcast(str(tmp_path), str(tmp_path / "o"))
    with pytest.raises(ValueError, match="n_classes must be 8 or 4"):
        (tmp_path / "Labels").mkdir()
        (tmp_path / "Labels" / "labels_consensus.csv").write_text(HEADER)
        prepare_msp_podcast(str(tmp_path), str(tmp_path / "o"), n_classes=5)


def write_csv(release, lines, encoding="utf-8"):
    path = release / "Labels" / "labels_consensus.csv"
    path.write_bytes("".join([HEADER, *lines]).encode(encoding))
    return path


def rows_of(release):
    text = (release / "Labels" / "labels_consensus.csv").read_text()
    return text.splitlines(keepends=True)[1:]


def test_an_empty_required_split_is_an_error_and_test2_is_optional(
    release, tmp_path, caplog
):
    rows = rows_of(release)
    write_csv(release, [r for r in rows if ",Test2" not in r])
    with caplog.at_level(logging.WARNING):
        counts = prepare_msp_podcast(str(release), str(tmp_path / "a"))
    assert "Test2" not in counts
    assert not (tmp_path / "a" / "test2.json").exists()
    assert "Test2 has no usable rows" in caplog.text
    write_csv(release, [r for r in rows if ",Test1" not in r])
    with pytest.raises(ValueError, match="Split Test1 has no usable rows"):
        prepare_msp_podcast(str(release), str(tmp_path / "b"))


def test_duplicates_and_escaping_file_names_are_refused(release, tmp_path):
    rows = rows_of(release)
    write_csv(release, rows + [rows[0].replace(",Train", ",Test1")])
    with pytest.raises(ValueError, match=r"line 16: .* listed again \(first"):
        prepare_msp_podcast(str(release), str(tmp_path / "a"))
    for name in ("../Labels/labels_consensus.csv", "/etc/hostname"):
        write_csv(release, rows + [f"{name},N,3,4,3,30,Male,Train\n"])
        with pytest.raises(ValueError, match="not a file name inside Audios"):
            prepare_msp_podcast(str(release), str(tmp_path / "a"))


def test_bom_latin1_and_short_rows(release, tmp_path):
    rows = rows_of(release)
    write_csv(release, rows, encoding="utf-8-sig")
    assert prepare_msp_podcast(str(release), str(tmp_path / "bom"))["Train"]
    write_csv(
        release,
        rows[:3] + ["caf\xe9.wav,N,3,4,3,30,Male,Train\n"],
        encoding="latin-1",
    )
    with pytest.raises(ValueError, match="line 5: not UTF-8"):
        prepare_msp_podcast(str(release), str(tmp_path / "l1"))
    write_csv(release, rows[:2] + ["MSP-PODCAST_0009_0001.wav,N\n"])
    with pytest.raises(ValueError, match="line 4: 2 fields where the header"):
        prepare_msp_podcast(str(release), str(tmp_path / "short"))


def test_a_truncated_manifest_or_a_changed_table_is_redone(release, tmp_path):
    out = tmp_path / "m"
    prepare_msp_podcast(str(release), str(out))
    (out / "valid.json").write_text('{"MSP-PODCAST_0002')  # killed mid-write
    assert prepare_msp_podcast(str(release), str(out))["Development"] == 1
    assert load(out, "valid.json")
    rows = rows_of(release)
    write_csv(release, [r.replace(",H,", ",A,") for r in rows])
    assert prepare_msp_podcast(str(release), str(out))
    assert load(out, "train.json")["MSP-PODCAST_0001_0002"]["emo"] == "Angry"
    assert not list(out.glob("*.tmp"))


def test_restored_audio_is_seen_and_paths_are_absolute(
    release, tmp_path, monkeypatch
):
    # Prepared from the release's parent with a relative data folder.
    monkeypatch.chdir(release.parent)
    out = tmp_path / "manifests"
    prepare_msp_podcast(release.name, str(out))
    train = load(out, "train.json")
    assert "MSP-PODCAST_0001_0006" not in train  # its audio is missing
    assert all(os.path.isabs(item["wav"]) for item in train.values())
    # The missing file comes back: the rerun is not "up to date".
    write_tone_clips(
        str(release / "Audios"), [("MSP-PODCAST_0001_0006", 0.5, 1)]
    )
    assert prepare_msp_podcast(release.name, str(out)) != {}
    restored = load(out, "train.json")["MSP-PODCAST_0001_0006"]
    monkeypatch.chdir(tmp_path)  # another directory: the paths still hold
    assert os.path.isfile(restored["wav"])
    assert prepare_msp_podcast(str(release), str(out)) == {}
