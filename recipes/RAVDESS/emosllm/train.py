#!/usr/bin/env python3
"""Recipe for EmoSLLM (arXiv 2508.14130) on RAVDESS speech.

RAVDESS actors say two fixed sentences in 8 emotions, so only how they are
said tells the classes apart. The phase starts from an ASR-trained
predecessor (or from nothing) and is tested on held-out actors:

    python train.py hparams/ser.yaml --data_folder=/data/RAVDESS \
        --previous_phase_folder=results/emosllm/1986/p2_asr_lora

The baseline on the same split and frozen encoder is one more command:

    python linear_probe.py hparams/ser.yaml --data_folder=/data/RAVDESS

Everything but the data preparation is shared with the MSP-Podcast recipe
(``speechbrain_emosllm.recipe``).

Authors
 * speechbrain-emosllm contributors 2026
"""

import sys

from ravdess_prepare import prepare_ravdess

from speechbrain_emosllm.labels import ravdess_labels
from speechbrain_emosllm.recipe import run_phase


def prepare_data(hparams):
    """Writes the train/valid/test manifests, split by actor."""
    prepare_ravdess(
        data_folder=hparams["data_folder"],
        save_folder=hparams["manifest_folder"],
        valid_actors=hparams["valid_actors"],
        test_actors=hparams["test_actors"],
        label_set=hparams["label_set"],
    )


def class_names(hparams):
    """The classes of the chosen label set."""
    return ravdess_labels(hparams["label_set"])


if __name__ == "__main__":
    run_phase(sys.argv[1:], prepare_data, class_names)
