"""Runs an inference mode (``speechbrain_emosllm.modes``) on a batch.

Authors
 * speechbrain-emosllm contributors 2026
"""

import torch

from speechbrain_emosllm.answer_scoring import generate_answers, score_labels
from speechbrain_emosllm.modes import get_mode
from speechbrain_emosllm.prompts import parse_answer


class EmotionDecoder:
    """Runs an inference mode on a batch of audio embeddings.

    The emotion is chosen by scoring every label after the mode's prefix
    (always a valid class; softmax gives probabilities). ``asr`` and
    ``joint_generated`` first generate a transcript; with
    ``free_generation`` the other modes also generate a free answer, whose
    parsed label (None if invalid) is returned as ``free_form``.

    Arguments
    ---------
    speech_llm : speechbrain_emosllm.SpeechLLM
        The LLM.
    builder : speechbrain_emosllm.PromptBuilder
        Prompts of the same tokenizer.
    max_new_tokens : int
        Longest generated answer.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_emosllm import PromptBuilder, SpeechLLM
    >>> from speechbrain_emosllm.testing import make_tiny_llm
    >>> llm = SpeechLLM(make_tiny_llm(tempfile.mkdtemp()))
    >>> decoder = EmotionDecoder(
    ...     llm, PromptBuilder(llm.tokenizer, ["Happy", "Sad"], 2), 4)
    >>> out = decoder.run_mode(torch.zeros(1, 2, 64), "ser_only")
    >>> out["labels"][0] in ("Happy", "Sad"), out["probabilities"].shape
    (True, torch.Size([1, 2]))
    """

    def __init__(self, speech_llm, builder, max_new_tokens=64):
        self.speech_llm = speech_llm
        self.builder = builder
        self.max_new_tokens = max_new_tokens

    def _prefix_batch(self, prefixes, device):
        lengths = torch.tensor(
            [len(p["input_ids"]) for p in prefixes], device=device
        )
        ids = torch.zeros(
            len(prefixes), int(lengths.max()), dtype=torch.long, device=device
        )
        for row, prefix in enumerate(prefixes):
            ids[row, : len(prefix["input_ids"])] = torch.tensor(
                prefix["input_ids"], device=device
            )
        starts = torch.tensor(
            [p["audio_start"] for p in prefixes], device=device
        )
        return ids, lengths, starts

    def generate(self, audio_embeddings, prefixes):
        """Greedy answers after each prefix, as text from the answer start.

        Arguments
        ---------
        audio_embeddings : torch.Tensor
            (batch, n_queries, hidden).
        prefixes : list of dict
            Outputs of ``PromptBuilder.inference_prefix``.

        Returns
        -------
        list of str
        """
        device = audio_embeddings.device
        generated = generate_answers(
            self.speech_llm,
            audio_embeddings,
            *self._prefix_batch(prefixes, device),
            self.max_new_tokens,
            self.builder.end_of_turn_ids,
        )
        answers = []
        for prefix, row in zip(prefixes, generated):
            # The assistant prefix (e.g. "| Emotion:") is part of the answer.
            tail = prefix["input_ids"][prefix["answer_start"] :]
            answers.append(
                self.builder.tokenizer.decode(
                    tail + row, skip_special_tokens=True
                )
            )
        return answers

    def score(self, audio_embeddings, prefixes):
        """Label log-likelihoods (batch, n_labels) after each prefix.

        Arguments
        ---------
        audio_embeddings : torch.Tensor
            (batch, n_queries, hidden).
        prefixes : list of dict
            Outputs of ``PromptBuilder.inference_prefix``.

        Returns
        -------
        torch.Tensor
        """
        device = audio_embeddings.device
        return score_labels(
            self.speech_llm,
            audio_embeddings,
            *self._prefix_batch(prefixes, device),
            self.builder.label_ids,
        )

    def run_mode(
        self,
        audio_embeddings,
        mode,
        transcripts=None,
        free_generation=False,
        rng=None,
    ):
        """Runs ``mode`` on a batch.

        Arguments
        ---------
        audio_embeddings : torch.Tensor
            (batch, n_queries, hidden) QPMapper outputs.
        mode : str
            ``ser_only``, ``prompt_hint``, ``joint_oracle``,
            ``joint_generated`` or ``asr``.
        transcripts : list of str, optional
            Reference transcripts (``prompt_hint``, ``joint_oracle``).
        free_generation : bool
            Also generate free answers in the scoring-only modes.
        rng : random.Random, optional
            Random prompt paraphrase and label order (fixed when None).

        Returns
        -------
        dict
            ``labels`` and ``probabilities`` (batch, n_labels) unless mode
            is ``asr``; ``transcripts`` for transcribing modes;
            ``free_form`` labels when answers were generated.
        """
        spec = get_mode(mode)
        batch = audio_embeddings.shape[0]
        builder, out = self.builder, {}
        if spec.transcribes:
            prefixes = [
                builder.inference_prefix(mode, rng=rng) for _ in range(batch)
            ]
            parsed = [
                parse_answer(answer, builder.labels)
                for answer in self.generate(audio_embeddings, prefixes)
            ]
            out["transcripts"] = [text or "" for text, _ in parsed]
            if not spec.predicts_emotion:
                return out
            out["free_form"] = [label for _, label in parsed]
            prefixes = [
                builder.inference_prefix(mode, text, rng)
                for text in out["transcripts"]
            ]
        else:
            needs_reference = spec.needs_reference
            if needs_reference and transcripts is None:
                raise ValueError(f"Mode '{mode}' needs reference transcripts.")
            references = transcripts if needs_reference else [None] * batch
            prefixes = [
                builder.inference_prefix(mode, text, rng) for text in references
            ]
            if free_generation:
                out["free_form"] = [
                    parse_answer(answer, builder.labels)[1]
                    for answer in self.generate(audio_embeddings, prefixes)
                ]
        scores = self.score(audio_embeddings, prefixes)
        out["probabilities"] = scores.softmax(-1)
        out["labels"] = [builder.labels[i] for i in scores.argmax(-1).tolist()]
        return out
