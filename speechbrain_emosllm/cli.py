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

from speechbrain_emosllm.modes import AUDIO_ONLY_MODES, DEFAULT_MODE

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


def emit(record, out):
    """Writes one strict JSON line (NaN or infinity is an error)."""
    print(json.dumps(record, allow_nan=False), file=out, flush=True)


def infer(model, files, mode, batch_size, out=sys.stdout):
    """Writes one JSON line per file; errors do not stop the run.

    Each file is decoded once. Files no longer than the model's window are
    classified ``batch_size`` at a time; longer ones go through
    ``predict_signal`` (bounded batches of windows). Any failure of a file
    (unreadable, too short, non-finite, a model error) becomes an
    ``{"file", "error"}`` line; if a batch fails, its files are retried one
    by one so that the line names the file at fault.

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
    failures = 0
    window = model.hparams.max_audio_seconds * model.hparams.sample_rate
    for start in range(0, len(files), batch_size):
        short = []
        for path in files[start : start + batch_size]:
            try:
                signal = model.load_audio(path)
                if len(signal) > window:
                    emit(model.predict_signal(signal, mode, name=path), out)
                else:
                    short.append((path, signal))
            except Exception as error:  # any failure is this file's line
                failures += 1
                emit({"file": path, "error": str(error)}, out)
        failures += classify_short_files(model, short, mode, out)
    return failures


def classify_short_files(model, items, mode, out):
    """One batch of (path, signal) items; one by one if the batch fails."""
    from speechbrain.utils.data_utils import batch_pad_right

    if not items:
        return 0
    try:
        batch, relative = batch_pad_right([signal for _, signal in items])
        results = model.predict_batch(batch, relative, mode)
        lines = [
            json.dumps({"file": path, **result}, allow_nan=False)
            for (path, _), result in zip(items, results)
        ]
    except Exception:
        if len(items) == 1:
            path, signal = items[0]
            try:
                emit(model.predict_signal(signal, mode, name=path), out)
                return 0
            except Exception as error:  # named per file
                emit({"file": path, "error": str(error)}, out)
                return 1
        return sum(
            classify_short_files(model, [item], mode, out) for item in items
        )
    for line in lines:
        print(line, file=out, flush=True)
    return 0


def main(argv=None):
    """Entry point of ``emosllm-infer``.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (``sys.argv[1:]`` when None).

    Returns
    -------
    int
        Exit status: 0, 1 if any file failed (or the output pipe was
        closed), 2 for a usage error or a refused model folder.
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
        default=DEFAULT_MODE,
        choices=AUDIO_ONLY_MODES,
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
    try:
        failures = infer(
            model, list_audio(args.paths), args.mode, args.batch_size
        )
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly. Python would
        # otherwise complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
