"""``emosllm-infer``: emotion (and transcript) of audio files, as JSON lines.

    emosllm-infer --model exported_model speech.wav more_audio/

One JSON object per file: ``file``, ``label``, ``probabilities``,
``transcript``, ``mode``; a file that cannot be read gets
``{"file": ..., "error": ...}`` and the others still run.

A model folder's ``hyperparams.yaml`` builds the objects it names, so
loading it can run code: the folder is refused if it names anything an
exported EmoSLLM model does not, unless ``--trust-model`` is given.

Authors
 * speechbrain-emosllm contributors 2026
"""

import argparse
import json
import os
import sys
import tempfile

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus")


def list_audio(paths):
    """Files given, plus audio files found (recursively) in folders.

    Arguments
    ---------
    paths : list of str
        Files or folders.

    Returns
    -------
    list of str

    Example
    -------
    >>> list_audio(["a.wav"])
    ['a.wav']
    """
    files = []
    for path in paths:
        if os.path.isdir(path):
            for root, _, names in sorted(os.walk(path)):
                files += [
                    os.path.join(root, name)
                    for name in sorted(names)
                    if name.lower().endswith(AUDIO_EXTENSIONS)
                ]
        else:
            files.append(path)
    return files


def infer(model, files, mode, batch_size, out=sys.stdout):
    """Writes one JSON line per file; errors do not stop the run.

    Arguments
    ---------
    model : speechbrain_emosllm.inference.EmotionLLM
        Loaded model.
    files : list of str
        Audio files.
    mode : str
        Inference mode.
    batch_size : int
        Files classified together (when short enough).
    out : file
        Where the lines go.

    Returns
    -------
    int
        Number of files that failed.
    """
    from speechbrain.utils.data_utils import batch_pad_right

    failures = 0
    window = model.hparams.max_audio_seconds * model.hparams.sample_rate
    for start in range(0, len(files), batch_size):
        group, signals = [], []
        for path in files[start : start + batch_size]:
            try:
                signal = model.load_audio(path)
            except (OSError, ValueError, RuntimeError) as error:
                failures += 1
                print(
                    json.dumps({"file": path, "error": str(error)}),
                    file=out,
                    flush=True,
                )
                continue
            if len(signal) > window:  # cut into windows by classify_file
                result = model.classify_file(path, mode=mode)
                print(json.dumps(result), file=out, flush=True)
                continue
            group.append(path)
            signals.append(signal)
        if not group:
            continue
        batch, relative = batch_pad_right(signals)
        results = model.classify_batch(batch, relative, mode)
        for path, result in zip(group, results):
            print(json.dumps({"file": path, **result}), file=out, flush=True)
    return failures


def main(argv=None):
    """Entry point of ``emosllm-infer``.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (``sys.argv[1:]`` when None).

    Returns
    -------
    int
        Exit status: 0, or 1 if any file failed.
    """
    parser = argparse.ArgumentParser(
        prog="emosllm-infer",
        description=__doc__.split("\n")[0],
        epilog="Loading a model folder builds the Python objects its "
        "hyperparams.yaml names, i.e. can run code: folders naming anything "
        "an exported EmoSLLM model does not are refused unless "
        "--trust-model is given. Use folders from people you trust.",
    )
    parser.add_argument("paths", nargs="+", help="audio files or folders")
    parser.add_argument("--model", required=True, help="exported model folder")
    parser.add_argument(
        "--mode",
        default="joint_generated",
        choices=["joint_generated", "ser_only", "asr"],
    )
    parser.add_argument(
        "--trust-model",
        action="store_true",
        help="load a model folder whose YAML names other objects (runs "
        "their code)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--savedir",
        default=None,
        help="where SpeechBrain links the model files",
    )
    args = parser.parse_args(argv)
    hparams = os.path.join(args.model, "hyperparams.yaml")
    if not os.path.isfile(hparams):
        parser.error(f"{hparams} not found: is {args.model} a model folder?")
    if not args.trust_model:
        from speechbrain_emosllm.model_trust import (
            UntrustedModelError,
            check_model_yaml,
        )

        try:
            check_model_yaml(hparams)
        except UntrustedModelError as error:
            parser.exit(2, f"emosllm-infer: {error}\n")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from speechbrain_emosllm.inference import EmotionLLM

    savedir = args.savedir or tempfile.mkdtemp(prefix="emosllm-")
    model = EmotionLLM.from_hparams(
        source=args.model, savedir=savedir, run_opts={"device": args.device}
    )
    failures = infer(model, list_audio(args.paths), args.mode, args.batch_size)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
