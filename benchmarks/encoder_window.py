"""Whisper frames on the clips' own length vs the lobe's 30-s window.

    python benchmarks/encoder_window.py [--encoder whisper_tiny_en]
        [--source FOLDER] [--batch 8] [--seconds 3.7] [--repeats 3]

Builds the encoder preset's ``WhisperFrames`` (random weights from the
preset's config, or ``--source``, a transformers Whisper folder such as the
demo's ``results/demo/assets/whisper-tiny.en``) and times, in one run, a
batch of ``--seconds`` clips encoded on their own length, the same batch
padded to 30 s (SpeechBrain's lobe), and a batch of 30-s clips. Prints the
seconds of each and the ratios; the target is padded / own length >= 5 on
3.7-s clips.
"""

import argparse
import tempfile

import ruamel.yaml
import torch
from inference_latency import timed  # benchmarks/ is on sys.path

from speechbrain_emosllm.encoders import WhisperFrames
from speechbrain_emosllm.hparams import preset_path
from speechbrain_emosllm.testing import make_tiny_whisper


def preset_source(preset):
    """A folder of the preset's Whisper with random weights."""
    path = preset_path("encoder_preset", preset)
    config = dict(ruamel.yaml.YAML().load(open(path))["encoder_config"])
    config.pop("model_type", None)
    return make_tiny_whisper(tempfile.mkdtemp(), **config)


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="whisper_tiny_en")
    parser.add_argument("--source", default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.7)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    source = args.source or preset_source(args.encoder)
    save = tempfile.mkdtemp()
    own = WhisperFrames(source, save).eval()
    padded = WhisperFrames(source, save, pad_to_window=True).eval()
    short = torch.randn(args.batch, round(args.seconds * 16000))
    full = torch.randn(args.batch, 30 * 16000)
    lens = torch.ones(args.batch)
    rows = {
        f"{args.seconds:g}-s clips, own length": timed(
            lambda: own(short, lens), args.repeats
        ),
        f"{args.seconds:g}-s clips, padded to 30 s": timed(
            lambda: padded(short, lens), args.repeats
        ),
        "30-s clips": timed(lambda: own(full, lens), args.repeats),
    }
    print(
        f"encoder: {args.source or args.encoder}, batch {args.batch}, "
        f"CPU threads {torch.get_num_threads()}"
    )
    for name, seconds in rows.items():
        print(f"{name:<32}{seconds:8.3f} s")
    own_s, padded_s, full_s = rows.values()
    print(
        f"ratio padded / own length:      {padded_s / own_s:8.2f}"
        "  (target >= 5)"
    )
    print(f"ratio 30-s clips / own length:  {full_s / own_s:8.2f}")


if __name__ == "__main__":
    main()
