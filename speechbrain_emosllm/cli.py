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


def positive_int(text):
    """An argparse type: an integer of at least 1.

    Example
    -------
    >>> positive_int("4")
    4
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer: {text}")
    return value


def device_problem(device):
    """Why ``device`` cannot run the model here (None: it can).

    Arguments
    ---------
    device : str
        A torch device string (``cpu``, ``cuda``, ``cuda:1``...).

    Returns
    -------
    str or None

    Example
    -------
    >>> device_problem("cpu") is None, device_problem("gpu")[:21]
    (True, "'gpu' is not a device")
    """
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        return f"'{device}' is not a device (use cpu, cuda or cuda:N)"
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return f"--device {device}: no CUDA GPU is available here"
        if parsed.index is not None and parsed.index >= count:
            return f"--device {device}: this machine has {count} CUDA GPU(s)"
    elif parsed.type != "cpu":
        backend = getattr(torch.backends, parsed.type, None)
        if backend is None or not backend.is_available():
            return f"--device {device}: not available on this machine"
    return None


def model_folder_problem(folder):
    """Why ``folder`` is not an exported model folder (None: it is).

    Arguments
    ---------
    folder : str
        The ``--model`` argument.

    Returns
    -------
    str or None

    Example
    -------
    >>> model_folder_problem("/no/such/folder").split(": ")[-1]
    'is /no/such/folder a model folder?'
    """
    hparams = os.path.join(folder, "hyperparams.yaml")
    if not os.path.isfile(hparams):
        return f"{hparams} not found: is {folder} a model folder?"
    if not os.path.isfile(os.path.join(folder, "qpmapper.ckpt")):
        if os.path.isdir(os.path.join(folder, "save")):
            return (
                f"{folder} is a training phase folder, not a model: export "
                f"it first (python -m speechbrain_emosllm.export {folder} "
                "MODEL_FOLDER) and pass MODEL_FOLDER."
            )
        return f"{folder} has no qpmapper.ckpt: is it an exported model?"
    return None


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
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument(
        "--savedir",
        default=None,
        help="where SpeechBrain links the model files",
    )
    args = parser.parse_args(argv)
    # Usage errors (exit 2) before anything is loaded.
    problem = model_folder_problem(args.model) or device_problem(args.device)
    if problem:
        parser.error(problem)
    # The model folder is checked first: it is what could run code.
    if not args.trust_model:
        from speechbrain_emosllm.model_trust import (
            UntrustedModelError,
            check_model_folder,
        )

        try:
            check_model_folder(args.model)
        except UntrustedModelError as error:
            parser.exit(2, f"emosllm-infer: {error}\n")
    files = list_audio(args.paths)
    if not files:
        parser.error(
            "no audio files found in "
            + ", ".join(args.paths)
            + f" (extensions: {', '.join(AUDIO_EXTENSIONS)})"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from speechbrain_emosllm.inference import EmotionLLM

    savedir = args.savedir or tempfile.mkdtemp(prefix="emosllm-")
    model = EmotionLLM.from_hparams(
        source=args.model, savedir=savedir, run_opts={"device": args.device}
    )
    try:
        failures = infer(model, files, args.mode, args.batch_size)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly. Python would
        # otherwise complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
