"""SpeechBrain inference interface of an exported EmoSLLM model.

    from speechbrain_emosllm.inference import EmotionLLM
    model = EmotionLLM.from_hparams(source="model_folder", savedir="tmp")
    out_prob, score, index, text_lab = model.classify_file("speech.wav")
    model.predict_file("speech.wav")
    # {'label': 'Happy', 'probabilities': {...}, 'transcript': '...', ...}

Authors
 * speechbrain-emosllm contributors 2026
"""

import os

import torch
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.data_utils import batch_pad_right

from speechbrain_emosllm.audio import read_audio_file
from speechbrain_emosllm.decoding import EmotionDecoder
from speechbrain_emosllm.modes import DEFAULT_MODE, get_mode
from speechbrain_emosllm.prompts import PromptBuilder

# Shortest audio the model classifies (encoders' convolutions need a few
# hundred samples; less than this carries no emotion anyway).
MIN_AUDIO_SECONDS = 0.1


class EmotionLLM(Pretrained):
    """Speech emotion recognition (and transcription) with EmoSLLM.

    Modes: ``joint_generated`` (default: transcribe, then the emotion given
    that transcript), ``ser_only``, ``prompt_hint`` and ``joint_oracle``
    (these two need a reference transcript), and ``asr``.

    Files longer than ``max_audio_seconds`` (the training maximum) are cut
    into windows of at most that length; the label probabilities of the
    windows are averaged and their transcripts joined.

    ``classify_file`` / ``classify_batch`` answer as every SpeechBrain
    classifier does, ``(out_prob, score, index, text_lab)``;
    ``predict_file`` / ``predict_batch`` also give the transcript, the mode
    and the probabilities by class name.

    Example
    -------
    >>> model = EmotionLLM.from_hparams(source="exported_model",
    ...                                 savedir="tmp")  # doctest: +SKIP
    >>> out_prob, score, index, text_lab = model.classify_file(
    ...     "speech.wav")  # doctest: +SKIP
    >>> text_lab  # doctest: +SKIP
    ['Happy']
    >>> model.predict_file("speech.wav")["transcript"]  # doctest: +SKIP
    'kids are talking by the door'
    """

    HPARAMS_NEEDED = [
        "labels",
        "n_queries",
        "sample_rate",
        "max_audio_seconds",
        "window_batch_size",
        "max_new_tokens",
        "system_prompt",
        "llm_chat_template_kwargs",
    ]
    MODULES_NEEDED = ["encoder", "qpmapper", "speech_llm"]

    @classmethod
    def from_hparams(
        cls, source, hparams_file="hyperparams.yaml", overrides=None, **kwargs
    ):
        """Loads an exported model folder (see ``speechbrain_emosllm.export``).

        The folder's ``hyperparams.yaml`` builds the objects it names, so
        loading a folder can run its author's code: load only folders you
        trust, or check them first with
        ``speechbrain_emosllm.model_trust.check_model_yaml`` (as
        ``emosllm-infer`` does).

        Arguments
        ---------
        source : str
            The exported model folder.
        hparams_file : str
            Hyperparameter file inside it.
        overrides : dict, optional
            Hyperparameter overrides.
        **kwargs
            Passed to ``Pretrained.from_hparams`` (``savedir``,
            ``run_opts``...).

        Returns
        -------
        EmotionLLM
        """
        overrides = dict(overrides or {})
        overrides.setdefault("model_folder", os.path.abspath(str(source)))
        return super().from_hparams(
            source=source,
            hparams_file=hparams_file,
            overrides=overrides,
            **kwargs,
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels = list(self.hparams.labels)
        builder = PromptBuilder(
            self.mods.speech_llm.tokenizer,
            self.labels,
            self.hparams.n_queries,
            system_prompt=self.hparams.system_prompt,
            chat_template_kwargs=self.hparams.llm_chat_template_kwargs,
        )
        self.decoder = EmotionDecoder(
            self.mods.speech_llm, builder, self.hparams.max_new_tokens
        )

    def load_audio(self, path, savedir=None):
        """Mono audio at the model's rate; clear errors name the file.

        Arguments
        ---------
        path : str
            Audio file (any rate and channel count).
        savedir : str, optional
            Unused (local files only).

        Returns
        -------
        torch.Tensor
        """
        del savedir
        signal = read_audio_file(str(path), self.hparams.sample_rate)
        check_signal(signal, self.hparams.sample_rate, path)
        return signal

    @torch.no_grad()
    def encode_batch(self, wavs, wav_lens=None):
        """QPMapper embeddings (batch, n_queries, hidden) of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            (batch, samples) at the model's sampling rate.
        wav_lens : torch.Tensor, optional
            Relative lengths.

        Returns
        -------
        torch.Tensor
        """
        wavs = wavs.to(self.device).float()
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        wav_lens = wav_lens.to(self.device)
        frames = self.mods.encoder(wavs, wav_lens)
        return self.mods.qpmapper(frames.float(), wav_lens)

    def _check_mode(self, mode, transcripts):
        if get_mode(mode).needs_reference and transcripts is None:
            raise ValueError(
                f"Mode '{mode}' needs the reference transcript"
                " (transcripts=...)."
            )

    @torch.no_grad()
    def predict_batch(
        self, wavs, wav_lens=None, mode=DEFAULT_MODE, transcripts=None
    ):
        """Emotion (and transcript) of each waveform of a batch.

        Arguments
        ---------
        wavs : torch.Tensor
            (batch, samples) at the model's sampling rate.
        wav_lens : torch.Tensor, optional
            Relative lengths.
        mode : str
            Inference mode.
        transcripts : list of str, optional
            References for ``prompt_hint`` / ``joint_oracle``.

        Returns
        -------
        list of dict
            Per item: ``label``, ``probabilities`` (label -> float),
            ``transcript`` (transcribing modes, else None) and ``mode``.
        """
        self._check_mode(mode, transcripts)
        out = self.decoder.run_mode(
            self.encode_batch(wavs, wav_lens), mode, transcripts
        )
        results = []
        for row in range(wavs.shape[0]):
            item = {
                "label": None,
                "probabilities": None,
                "transcript": None,
                "mode": mode,
            }
            if "labels" in out:
                item["label"] = out["labels"][row]
                item["probabilities"] = dict(
                    zip(self.labels, out["probabilities"][row].tolist())
                )
            if "transcripts" in out:
                item["transcript"] = out["transcripts"][row]
            results.append(item)
        return results

    def classify_batch(
        self, wavs, wav_lens=None, mode=DEFAULT_MODE, transcripts=None
    ):
        """Emotion of each waveform, in SpeechBrain's classifier convention.

        Arguments
        ---------
        wavs : torch.Tensor
            (batch, samples) at the model's sampling rate.
        wav_lens : torch.Tensor, optional
            Relative lengths.
        mode : str
            An emotion mode (``speechbrain_emosllm.modes.EMOTION_MODES``).
        transcripts : list of str, optional
            References for ``prompt_hint`` / ``joint_oracle``.

        Returns
        -------
        out_prob : torch.Tensor
            (batch, n_classes) log-probabilities of the classes, in the
            order of ``self.labels``.
        score : torch.Tensor
            (batch,) the highest log-probability.
        index : torch.Tensor
            (batch,) its class index.
        text_lab : list of str
            Its class name.
        """
        return as_classifier_output(
            self.predict_batch(wavs, wav_lens, mode, transcripts), self.labels
        )

    def classify_file(self, path, mode=DEFAULT_MODE, transcript=None):
        """Emotion of one audio file, in SpeechBrain's classifier convention.

        Long files are cut into windows as in ``predict_file``.

        Arguments
        ---------
        path : str
            Audio file: any sampling rate and channel count.
        mode : str
            An emotion mode.
        transcript : str, optional
            Reference for ``prompt_hint`` / ``joint_oracle``.

        Returns
        -------
        (out_prob, score, index, text_lab)
            As ``classify_batch``, for a batch of one.
        """
        return as_classifier_output(
            [self.predict_file(path, mode, transcript)], self.labels
        )

    def predict_file(self, path, mode=DEFAULT_MODE, transcript=None):
        """Emotion (and transcript) of one audio file.

        Arguments
        ---------
        path : str
            Audio file: any sampling rate and channel count.
        mode : str
            Inference mode.
        transcript : str, optional
            Reference for ``prompt_hint`` / ``joint_oracle``.

        Returns
        -------
        dict
            ``file``, ``label``, ``probabilities``, ``transcript``,
            ``mode`` and ``windows`` (1 unless the file was cut).
        """
        self._check_mode(mode, None if transcript is None else [transcript])
        return self.predict_signal(
            self.load_audio(path), mode, transcript, name=str(path)
        )

    def predict_signal(
        self, signal, mode=DEFAULT_MODE, transcript=None, name=None
    ):
        """Emotion (and transcript) of one waveform of any length.

        Longer than ``max_audio_seconds``, it is cut into windows that run
        ``window_batch_size`` at a time (memory stays flat in the length);
        label probabilities are averaged weighted by each window's
        duration and transcripts are joined.

        Arguments
        ---------
        signal : torch.Tensor
            (samples,) at the model's sampling rate.
        mode : str
            Inference mode.
        transcript : str, optional
            Reference for ``prompt_hint`` / ``joint_oracle``.
        name : str, optional
            What ``file`` says in the result (and errors name).

        Returns
        -------
        dict
        """
        check_signal(signal, self.hparams.sample_rate, name or "signal")
        window = int(self.hparams.max_audio_seconds * self.hparams.sample_rate)
        chunks = split_windows(signal, window, self.hparams.sample_rate)
        results = []
        step = self.hparams.window_batch_size
        for start in range(0, len(chunks), step):
            group = chunks[start : start + step]
            batch, relative = batch_pad_right(group)
            results += self.predict_batch(
                batch,
                relative,
                mode,
                None if transcript is None else [transcript] * len(group),
            )
        weights = [len(chunk) / len(signal) for chunk in chunks]
        return merge_windows(results, weights, self.labels, mode, name)

    def transcribe_file(self, path):
        """Transcript of one audio file (``asr`` mode).

        Arguments
        ---------
        path : str
            Audio file.

        Returns
        -------
        str
        """
        return self.predict_file(path, mode="asr")["transcript"]


def as_classifier_output(results, labels):
    """``(out_prob, score, index, text_lab)`` from ``predict_*`` results.

    Arguments
    ---------
    results : list of dict
        Per item, ``probabilities`` by class name (None in ``asr``).
    labels : list of str
        Class names in output order.

    Returns
    -------
    tuple
        Log-probabilities (batch, n_classes), their maximum, its index and
        its class name, as SpeechBrain's classifiers return them.

    Example
    -------
    >>> out = as_classifier_output(
    ...     [{"probabilities": {"Sad": 0.25, "Happy": 0.75}}], ["Sad", "Happy"])
    >>> out[0].exp(), out[2], out[3]
    (tensor([[0.2500, 0.7500]]), tensor([1]), ['Happy'])
    """
    if any(item["probabilities"] is None for item in results):
        raise ValueError("classify_* needs an emotion mode (not asr).")
    probabilities = torch.tensor(
        [[item["probabilities"][label] for label in labels] for item in results]
    )
    out_prob = probabilities.clamp(min=1e-12).log()
    score, index = out_prob.max(dim=-1)
    return out_prob, score, index, [labels[i] for i in index.tolist()]


# Decoded audio lies in [-1, 1]; float files may overshoot a little, but a
# peak beyond this is no waveform (and overflows the encoder's features).
MAX_AMPLITUDE = 1000.0


def check_signal(signal, sample_rate, name):
    """Refuses audio too short to encode or holding NaN / infinity.

    Arguments
    ---------
    signal : torch.Tensor
        (samples,) waveform.
    sample_rate : int
        Its rate.
    name : str
        The file (or what to call it) in the error.

    Example
    -------
    >>> check_signal(torch.zeros(16000), 16000, "a.wav")
    >>> try:
    ...     check_signal(torch.zeros(10), 16000, "b.wav")
    ... except ValueError as error:
    ...     print(error)
    b.wav: 10 samples (0.001 s) is too short to classify (at least 0.1 s).
    >>> try:
    ...     check_signal(torch.full((16000,), 1e30), 16000, "c.wav")
    ... except ValueError as error:
    ...     print(str(error)[:38])
    c.wav: peak amplitude 1e+30 is far out
    """
    if len(signal) < MIN_AUDIO_SECONDS * sample_rate:
        raise ValueError(
            f"{name}: {len(signal)} samples ({len(signal) / sample_rate:.3f}"
            f" s) is too short to classify (at least {MIN_AUDIO_SECONDS} s)."
        )
    if not torch.isfinite(signal).all():
        raise ValueError(f"{name}: the audio holds NaN or infinite samples.")
    peak = signal.abs().max().item()
    if peak > MAX_AMPLITUDE:
        raise ValueError(
            f"{name}: peak amplitude {peak:.3g} is far outside [-1, 1] "
            f"(over {MAX_AMPLITUDE:g}): not a decodable waveform scale."
        )


def split_windows(signal, window, sample_rate):
    """Windows of at most ``window`` samples; a too-short tail joins the last.

    Arguments
    ---------
    signal : torch.Tensor
        (samples,) waveform.
    window : int
        Longest window, in samples.
    sample_rate : int
        Its rate (a tail under ``MIN_AUDIO_SECONDS`` is merged).

    Returns
    -------
    list of torch.Tensor

    Example
    -------
    >>> [len(w) for w in split_windows(torch.zeros(2500), 1000, 1000)]
    [1000, 1000, 500]
    >>> [len(w) for w in split_windows(torch.zeros(2050), 1000, 1000)]
    [1000, 1050]
    """
    starts = list(range(0, len(signal), window))
    if len(starts) > 1 and len(signal) - starts[-1] < (
        MIN_AUDIO_SECONDS * sample_rate
    ):
        starts.pop()
    ends = starts[1:] + [len(signal)]
    return [signal[a:b] for a, b in zip(starts, ends)]


def merge_windows(results, weights, labels, mode, name):
    """One result from per-window results, weighting by window duration.

    Arguments
    ---------
    results : list of dict
        ``predict_batch`` results, one per window.
    weights : list of float
        Share of the file in each window.
    labels : list of str
        Class names.
    mode : str
        Inference mode.
    name : str or None
        The file.

    Returns
    -------
    dict

    Example
    -------
    >>> r = [{"probabilities": {"A": 1.0, "B": 0.0}, "transcript": None},
    ...      {"probabilities": {"A": 0.0, "B": 1.0}, "transcript": None}]
    >>> merge_windows(r, [0.9, 0.1], ["A", "B"], "ser_only", "f")["label"]
    'A'
    """
    merged = {
        "file": name,
        "mode": mode,
        "windows": len(results),
        "label": None,
        "probabilities": None,
        "transcript": None,
    }
    if results[0]["probabilities"] is not None:
        probabilities = {
            label: sum(
                w * r["probabilities"][label] for r, w in zip(results, weights)
            )
            for label in labels
        }
        merged["probabilities"] = probabilities
        merged["label"] = max(probabilities, key=probabilities.get)
    if results[0]["transcript"] is not None:
        merged["transcript"] = " ".join(r["transcript"] for r in results)
    return merged
