#!/usr/bin/env python3
"""Recipe for training EmoSLLM (arXiv 2508.14130) on MSP-Podcast.

Raw audio goes through a frozen SSL encoder (WavLM Large by default), the
QPMapper pools its frames into 32 embeddings, and these are spliced into the
user turn of a chat prompt for a frozen LLM (Llama-3.2-3B-Instruct by
default), adapted with LoRA from phase 2 on. One script runs the three
curriculum phases, each with its own YAML file:

    python train.py hparams/p1_asr.yaml --data_folder=/path/to/MSP-Podcast
    python train.py hparams/p2_asr_lora.yaml --data_folder=/path/to/MSP-Podcast
    python train.py hparams/p3_joint.yaml --data_folder=/path/to/MSP-Podcast

Phases 2 and 3 start from the best checkpoint of the phase before. The test
stage reports, for each inference mode, accuracy, macro-F1, per-class F1,
confusion matrices (text and PNG), WER and the invalid-answer rate. What is
not MSP-specific (the Brain, datasets, caching, training loop) lives in
``speechbrain_emosllm.recipe`` and is shared with the RAVDESS recipe.

Authors
 * speechbrain-emosllm contributors 2026
"""

import sys

from speechbrain_emosllm.labels import emotion_labels
from speechbrain_emosllm.recipe import run_phase


def prepare_data(hparams):
    """Writes the MSP-Podcast manifests (train, valid, test1, test2)."""
    from msp_podcast_prepare import prepare_msp_podcast

    prepare_msp_podcast(
        data_folder=hparams["data_folder"],
        save_folder=hparams["manifest_folder"],
        n_classes=hparams["n_classes"],
    )


def class_names(hparams):
    """The classes of the chosen protocol (8 or 4)."""
    return emotion_labels(hparams["n_classes"])


if __name__ == "__main__":
    run_phase(sys.argv[1:], prepare_data, class_names)
