"""SpeechBrain inference interface of an exported EmoSLLM model.

    from speechbrain_emosllm.inference import EmotionLLM
    model = EmotionLLM.from_hparams(source="model_folder", savedir="tmp")
    model.classify_file("speech.wav")
    # {'label': 'Happy', 'probabilities': {...}, 'transcript': '...', ...}

Authors
 * speechbrain-emosllm contributors 2026
"""

import math
import os

import torch
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.data_utils import batch_pad_right

from speechbrain_emosllm.audio import read_audio_file
from speechbrain_emosllm.decoding import ALL_MODES, EmotionDecoder
from speechbrain_emosllm.prompts import PromptBuilder


class EmotionLLM(Pretrained):
    """Speech emotion recognition (and transcription) with EmoSLLM.

    Modes: ``joint_generated`` (default: transcribe, then the emotion given
    that transcript), ``ser_only``, ``prompt_hint`` and ``joint_oracle``
    (these two need a reference transcript), and ``asr``.

    Files longer than ``max_audio_seconds`` (the training maximum) are cut
    into windows of at most that length; the label probabilities of the
    windows are averaged and their transcripts joined.

    Example
    -------
    >>> model = EmotionLLM.from_hparams(source="exported_model",
    ...                                 savedir="tmp")  # doctest: +SKIP
    >>> model.classify_file("speech.wav")["label"]  # doctest: +SKIP
    'Happy'
    """

    HPARAMS_NEEDED = [
        "labels",
        "n_queries",
        "sample_rate",
        "max_audio_seconds",
        "max_new_tokens",
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
            chat_template_kwargs=self.hparams.chat_template_kwargs,
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
        return read_audio_file(str(path), self.hparams.sample_rate)

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
        if mode not in ALL_MODES:
            raise ValueError(
                f"Unknown mode '{mode}'; use one of {', '.join(ALL_MODES)}."
            )
        if mode in ("prompt_hint", "joint_oracle") and transcripts is None:
            raise ValueError(
                f"Mode '{mode}' needs the reference transcript"
                " (transcripts=...)."
            )

    @torch.no_grad()
    def classify_batch(
        self, wavs, wav_lens=None, mode="joint_generated", transcripts=None
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
        out = self.decoder.decode(
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

    def classify_file(self, path, mode="joint_generated", transcript=None):
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
        signal = self.load_audio(path)
        window = int(self.hparams.max_audio_seconds * self.hparams.sample_rate)
        count = max(1, math.ceil(len(signal) / window))
        chunks = [signal[i * window : (i + 1) * window] for i in range(count)]
        batch, relative = batch_pad_right(chunks)
        results = self.classify_batch(
            batch,
            relative,
            mode,
            None if transcript is None else [transcript] * count,
        )
        merged = {
            "file": str(path),
            "mode": mode,
            "windows": count,
            "label": None,
            "probabilities": None,
            "transcript": None,
        }
        if results[0]["probabilities"] is not None:
            probabilities = {
                label: sum(r["probabilities"][label] for r in results) / count
                for label in self.labels
            }
            merged["probabilities"] = probabilities
            merged["label"] = max(probabilities, key=probabilities.get)
        if results[0]["transcript"] is not None:
            merged["transcript"] = " ".join(r["transcript"] for r in results)
        return merged

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
        return self.classify_file(path, mode="asr")["transcript"]
