"""The plugin as pip installs it: a wheel that carries its presets."""

import glob
import os
import shutil
import subprocess
import sys
import zipfile

from conftest import ROOT
from speechbrain_emosllm.hparams import PRESETS_FOLDER


def run(args, cwd, env=None):
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=600,
    )


def build_wheel(tmp_path):
    """Builds the plugin's wheel from a copy of the sources; its path."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "README.md", "LICENSE", "requirements.txt"):
        shutil.copy(os.path.join(ROOT, name), source)
    for folder in ("speechbrain_emosllm", "hparams"):
        shutil.copytree(
            os.path.join(ROOT, folder),
            source / folder,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    built = run(
        [
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stdout[-3000:]
    (wheel,) = glob.glob(str(tmp_path / "dist" / "*.whl"))
    return wheel


def install_wheel(wheel, tmp_path):
    """Installs a wheel (no dependencies) into a folder; the folder."""
    site = tmp_path / "site"
    installed = run(
        [
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            wheel,
        ],
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stdout[-3000:]
    return str(site)


def test_wheel_holds_the_presets_and_runs_outside_the_repository(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    # The repository's hparams/ folder, installed as the presets package.
    presets = [
        "speechbrain_emosllm/presets/"
        + os.path.relpath(path, PRESETS_FOLDER).replace(os.sep, "/")
        for path in glob.glob(
            str(PRESETS_FOLDER / "**" / "*.yaml"), recursive=True
        )
    ]
    assert len(presets) >= 8  # 7 model presets and the inference template
    assert set(presets) <= set(names)
    assert any(name.endswith("LICENSE") for name in names)

    # Into an environment that has every dependency (at versions inside
    # the ranges), pip adds the plugin alone: torch and the rest are kept.
    dry_run = run(
        ["-m", "pip", "install", "--dry-run", "--no-index", wheel],
        cwd=tmp_path,
    )
    assert dry_run.returncode == 0, dry_run.stdout[-3000:]
    assert "Would install speechbrain-emosllm-0.1.0" in dry_run.stdout
    assert "torch" not in dry_run.stdout.split("Would install")[-1]

    site = install_wheel(wheel, tmp_path)
    env = dict(os.environ, PYTHONPATH=site, HF_HUB_OFFLINE="1")
    where = run(
        ["-c", "import speechbrain_emosllm as m; print(m.__file__)"],
        cwd=tmp_path,
        env=env,
    )
    assert where.stdout.strip().startswith(site), where.stdout
    phase = os.path.join(
        ROOT, "recipes", "MSP-Podcast", "emosllm", "hparams", "p3_joint.yaml"
    )
    summary = run(
        [
            "-m",
            "speechbrain_emosllm.summary",
            phase,
            "--encoder_preset=whisper_tiny_en",
            "--llm_preset=smollm2-135m-instruct",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert summary.returncode == 0, summary.stdout[-3000:]
    assert summary.stdout.strip().splitlines()[-1].startswith("trainable=")
