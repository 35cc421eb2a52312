#!/usr/bin/env python3
"""The baseline of the RAVDESS recipe: linear probes of the frozen encoder.

Same phase YAML, split, encoder and feature cache as ``train.py``; prints
and writes (``<experiment_folder>/linear_probe/probe_results.json``) the
test accuracy and macro-F1 of a probe of the last layer and of a learned
weighted sum of all layers:

    python linear_probe.py hparams/ser.yaml --data_folder=/data/RAVDESS

Authors
 * speechbrain-emosllm contributors 2026
"""

import sys

from train import class_names, prepare_data

from speechbrain_emosllm.linear_probe import run_linear_probe

if __name__ == "__main__":
    run_linear_probe(sys.argv[1:], prepare_data, class_names)
