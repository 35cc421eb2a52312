"""Reading audio files for training and inference.

Authors
 * speechbrain-emosllm contributors 2026
"""

import os


def read_audio_file(path, sample_rate):
    """Mono audio at ``sample_rate`` from any file torchaudio can decode.

    Arguments
    ---------
    path : str
        Audio file.
    sample_rate : int
        Target sampling rate.

    Returns
    -------
    torch.Tensor
        (samples,) waveform.
    """
    import torchaudio
    from speechbrain.dataio.dataio import read_audio, read_audio_info

    if not os.path.isfile(path):
        raise FileNotFoundError(f"Audio file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"Audio file is empty: {path}")
    _, problem = check_audio(path)
    if problem == "audio has no samples":  # a header only: say so
        raise ValueError(f"Audio file has no samples: {path}")
    try:
        info = read_audio_info(path)
        signal = read_audio(path)
    except Exception as error:  # backends raise many error types
        raise ValueError(f"Cannot decode audio file {path}: {error}") from error
    if signal.dim() == 2:  # (samples, channels): down-mix
        signal = signal.mean(dim=1)
    if signal.numel() == 0:
        raise ValueError(f"Audio file has no samples: {path}")
    if info.sample_rate != sample_rate:
        signal = torchaudio.functional.resample(
            signal, info.sample_rate, sample_rate
        )
    return signal


def check_audio(path):
    """Duration of a readable, non-empty audio file, or why it is not.

    Arguments
    ---------
    path : str
        Audio file.

    Returns
    -------
    (float or None, str or None)
        Duration in seconds, or None and the reason.

    Example
    -------
    >>> check_audio("no/such/file.wav")
    (None, 'missing audio')
    """
    import soundfile

    if not os.path.isfile(path):
        return None, "missing audio"
    if os.path.getsize(path) == 0:
        return None, "empty audio file"
    try:
        info = soundfile.info(path)
    except Exception as error:  # soundfile raises several error types
        return None, f"unreadable audio ({error})"
    if info.frames == 0:
        return None, "audio has no samples"
    return info.frames / info.samplerate, None
