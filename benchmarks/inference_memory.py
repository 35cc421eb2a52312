#!/usr/bin/env python3
"""Peak memory of ``predict_file`` as the audio gets longer.

Long files are cut into windows that run a few at a time, so the peak
should stay flat in the file's length. Each length runs in a fresh process
(peak resident memory of that process, model loading included) on a file
made by repeating a clip:

    python benchmarks/inference_memory.py --model my_emosllm \\
        --clip speech.wav --seconds 10 600 3600 [--mode ser_only]

Authors
 * speechbrain-emosllm contributors 2026
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def measure(model, path, mode):
    """Loads the model, classifies ``path``; prints peak RSS and timings."""
    from speechbrain_emosllm.inference import EmotionLLM

    start = time.time()
    emotion = EmotionLLM.from_hparams(
        source=model, savedir=tempfile.mkdtemp(prefix="emosllm-")
    )
    loaded = time.time()
    result = emotion.predict_file(path, mode=mode)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        json.dumps(
            {
                "windows": result["windows"],
                "label": result["label"],
                "load_s": round(loaded - start, 1),
                "classify_s": round(time.time() - loaded, 1),
                "peak_gb": round(peak, 3),
            }
        )
    )


def write_long_file(clip, seconds, folder):
    """``clip`` repeated to ``seconds``, as 16-bit PCM."""
    import numpy as np
    import soundfile

    audio, rate = soundfile.read(clip, dtype="int16", always_2d=True)
    audio = audio[:, 0]
    repeats = int(np.ceil(seconds * rate / len(audio)))
    long = np.tile(audio, repeats)[: int(seconds * rate)]
    path = os.path.join(folder, f"{seconds}s.wav")
    soundfile.write(path, long, rate, subtype="PCM_16")
    return path


def main():
    """Runs one fresh process per length (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument(
        "--seconds", type=float, nargs="+", default=[10, 600, 3600]
    )
    parser.add_argument("--mode", default="ser_only")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.model, args.measure, args.mode)
        return
    folder = tempfile.mkdtemp(prefix="emosllm-memory-")
    for seconds in args.seconds:
        path = write_long_file(args.clip, seconds, folder)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--model",
                args.model,
                "--clip",
                args.clip,
                "--mode",
                args.mode,
                "--measure",
                path,
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ, HF_HUB_OFFLINE="1"),
        )
        if out.returncode != 0:
            sys.exit(out.stderr[-2000:])
        record = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{seconds:>6.0f} s of audio: {json.dumps(record)}", flush=True)
        os.remove(path)


if __name__ == "__main__":
    main()
