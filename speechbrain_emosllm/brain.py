"""The EmoSLLM ``Brain``: trains the QPMapper and LoRA weights of a phase.

Shared by every recipe (MSP-Podcast, RAVDESS): a recipe's ``train.py``
prepares its manifests and hands the rest to
``speechbrain_emosllm.recipe.run_phase``.

Authors
 * speechbrain-emosllm contributors 2026
"""

import json
import os
import random
import time
from collections import Counter

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.logger import get_logger

from speechbrain_emosllm.checkpoints import SELECTION_KEY
from speechbrain_emosllm.metrics import EmotionMetrics
from speechbrain_emosllm.modes import TRANSCRIBING_MODES
from speechbrain_emosllm.padding import relative_to_absolute

logger = get_logger(__name__)


class EmoSLLM(sb.Brain):
    """Trains and evaluates the QPMapper and LoRA weights of EmoSLLM.

    Arguments
    ---------
    *args, **kwargs
        ``sb.Brain``'s (modules, opt_class, hparams, run_opts,
        checkpointer).
    labels : list of str
        The phase's classes, in order.
    decoder : EmotionDecoder
        Runs the evaluation modes.
    label_anchor : LabelAnchor, optional
        Scores the audio embeddings against the class names: its decision
        is logged in evaluation (``utterance_token_*``, the token's own
        decision), and it joins the loss with ``label_anchor_weight`` > 0.
    class_weights : torch.Tensor, optional
        (n_classes,) weights of the emotion answer and anchor losses.
    """

    def __init__(
        self,
        *args,
        labels,
        decoder,
        label_anchor=None,
        class_weights=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.labels = labels
        self.decoder = decoder
        self.label_anchor = label_anchor
        if label_anchor is not None:
            self.label_anchor = label_anchor.to(self.device)
        self.class_weights = class_weights
        self.test_name = None
        self.test_modes = None
        # Seconds of every stage in order (phase_seconds.json).
        self.stage_seconds = []

    def compute_forward(self, batch, stage):
        """Encodes the audio (or reads cached frames) and pools them.

        In training, a stacked phase's clips bring their out-of-fold token
        posteriors (``stacking.attach_posteriors``).
        """
        batch = batch.to(self.device)
        if self.hparams.feature_cache:
            frames, lengths = batch.feats
        else:
            wavs, lengths = batch.sig
            # Brain puts every module in train mode; the frozen encoder
            # must not apply dropout.
            self.modules.encoder.eval()
            with torch.no_grad():
                frames = self.modules.encoder(wavs, lengths)
        posterior = None
        if stage == sb.Stage.TRAIN:  # stacking: out-of-fold posteriors
            posterior = getattr(batch, "token_posterior", None)
        if posterior is not None:
            posterior = posterior.data
        return self.modules.qpmapper(frames.float(), lengths, posterior)

    def compute_objectives(self, audio_embeddings, batch, stage):
        """Answer loss (weighted spans) and, in evaluation, every mode.

        A test scores the modes only: its teacher-forced loss would cost a
        pass of the LLM as long as a mode's, and no report reads it (the
        returned loss is NaN and left out of the test statistics).
        """
        if stage != sb.Stage.TRAIN:
            self.evaluate_modes(audio_embeddings, batch)
            if self.label_anchor is not None:
                self.evaluate_anchor(audio_embeddings, batch)
        if stage == sb.Stage.TEST:
            return torch.tensor(float("nan"))
        input_ids, relative = batch.input_ids
        span_ids, _ = batch.span_ids
        if stage == sb.Stage.TRAIN:
            # Evaluation keeps the weight reached by training.
            self.current_asr_weight = self.asr_weight()
        span_weights = torch.tensor(
            [
                self.hparams.markup_loss_weight,
                self.current_asr_weight,
                self.hparams.emotion_loss_weight,
            ]
        )
        emotion_weights = None
        if self.class_weights is not None:
            emotion_weights = self.class_weights.to(self.device)[
                torch.as_tensor(batch.emo_index, device=self.device)
            ]
        out = self.modules.speech_llm(
            audio_embeddings,
            input_ids,
            relative_to_absolute(relative, input_ids.shape[1]),
            torch.as_tensor(batch.audio_start, device=self.device),
            span_ids,
            span_weights,
            emotion_weights,
            sync_token_count=stage == sb.Stage.TRAIN,
        )
        weight = self.hparams.label_anchor_weight
        if self.label_anchor is None or weight == 0:
            return out["loss"]
        anchor_loss = self.label_anchor.loss(
            audio_embeddings,
            torch.as_tensor(batch.emo_index, device=self.device),
            emotion_weights,
        )
        return out["loss"] + weight * anchor_loss

    current_asr_weight = 1.0
    steps_per_epoch = 1

    def make_dataloader(self, dataset, stage, *args, **loader_kwargs):
        """SpeechBrain's loader, whose length paces the ASR weight schedule.

        Under torchrun the training loader's length is already per process.
        """
        loader = super().make_dataloader(dataset, stage, *args, **loader_kwargs)
        if stage == sb.Stage.TRAIN:
            self.steps_per_epoch = len(loader)
        return loader

    def asr_weight(self):
        """Current weight of the transcript span (scheduled in phase 3)."""
        epochs = self.hparams.number_of_epochs
        done = self.hparams.epoch_counter.current - 1
        done += self.step / max(self.steps_per_epoch, 1)
        return float(self.hparams.asr_loss_weight(done / epochs))

    def evaluate_modes(self, audio_embeddings, batch):
        """Runs every evaluation mode on a batch and updates the metrics."""
        rng = random.Random(0) if self.hparams.shuffle_eval_prompts else None
        for mode in self.eval_modes:
            began = time.perf_counter()
            out = self.decoder.run_mode(
                audio_embeddings.detach(),
                mode,
                batch.wrd,
                free_generation=self.hparams.free_generation,
                rng=rng,
            )
            if "transcripts" in out:
                self.wer[mode].append(
                    batch.id,
                    [normalize_words(text) for text in out["transcripts"]],
                    [normalize_words(text) for text in batch.wrd],
                )
            if "labels" in out:
                self.emotion[mode].append(
                    batch.id, out["labels"], batch.emo, out.get("free_form")
                )
            self.mode_seconds[mode] += time.perf_counter() - began

    def evaluate_anchor(self, audio_embeddings, batch):
        """Scores the label anchor's own decisions (no LLM).

        How well the audio embeddings (the utterance token, where there is
        one) point at the right class name: what the LLM can read off
        them.
        """
        with torch.no_grad():
            guesses = self.label_anchor(audio_embeddings).argmax(-1)
        self.anchor_metrics.append(
            batch.id, [self.labels[g] for g in guesses.tolist()], batch.emo
        )

    def on_stage_start(self, stage, epoch=None):
        """Resets the evaluation metrics and the stage's clock."""
        self.stage_began = time.perf_counter()
        if stage == sb.Stage.TRAIN:
            return
        self.eval_modes = (
            self.hparams.valid_modes
            if stage == sb.Stage.VALID
            else self.test_modes or self.hparams.test_modes
        )
        self.emotion = {m: EmotionMetrics(self.labels) for m in self.eval_modes}
        self.wer = {m: self.hparams.wer_computer() for m in self.eval_modes}
        self.anchor_metrics = EmotionMetrics(self.labels)
        self.mode_seconds = dict.fromkeys(self.eval_modes, 0.0)

    def summarize_modes(self):
        """Flat statistics of every evaluated mode."""
        stats = {}
        for mode in self.eval_modes:
            summary = self.emotion[mode].summarize()
            if summary["count"]:
                stats[f"{mode}_acc"] = summary["accuracy"]
                stats[f"{mode}_macro_f1"] = summary["macro_f1"]
                if "invalid_rate" in summary:
                    stats[f"{mode}_invalid"] = summary["invalid_rate"]
            if mode in TRANSCRIBING_MODES:
                stats[f"{mode}_WER"] = self.wer[mode].summarize("error_rate")
        anchor = self.anchor_metrics.summarize()
        if anchor["count"]:
            stats["utterance_token_acc"] = anchor["accuracy"]
            stats["utterance_token_macro_f1"] = anchor["macro_f1"]
        return stats

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, anneals the learning rate, checkpoints, writes reports."""
        stats = {} if stage == sb.Stage.TEST else {"loss": stage_loss}
        if stage != sb.Stage.TRAIN:
            stats.update(self.summarize_modes())
        # Seconds go to phase_seconds.json only: the train log, the
        # checkpoint meta and summary.json keep metrics.
        self.record_stage_seconds(stage, epoch)
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        if stage == sb.Stage.VALID:
            old_lr, new_lr = self.hparams.lr_annealing(stage_loss)
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            self.hparams.train_logger.log_stats(
                stats_meta={
                    "epoch": epoch,
                    "lr": old_lr,
                    "asr_weight": self.current_asr_weight,
                },
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={**stats, SELECTION_KEY: self.selection_error(stats)},
                min_keys=[SELECTION_KEY],
            )
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={
                    "test set": self.test_name,
                    "epoch loaded": self.hparams.epoch_counter.current,
                },
                test_stats=stats,
            )
            if if_main_process():
                self.write_test_reports(stats)

    def record_stage_seconds(self, stage, epoch):
        """Appends the stage's seconds (and its modes') to ``stage_seconds``."""
        seconds = round(time.perf_counter() - self.stage_began, 1)
        entry = {"stage": stage.name.lower(), "seconds": seconds}
        if stage == sb.Stage.TEST:
            entry["test_set"] = self.test_name
        else:
            entry["epoch"] = epoch
        if stage != sb.Stage.TRAIN:
            entry["modes"] = {
                m: round(s, 1) for m, s in self.mode_seconds.items()
            }
        self.stage_seconds.append(entry)

    def selection_error(self, stats):
        """Lower-is-better number the best checkpoint is chosen on."""
        metric = self.hparams.selection_metric
        if metric == "loss":
            return stats["loss"]
        if metric == "WER":
            return (
                stats["asr_WER"]
                if "asr_WER" in stats
                else stats["joint_generated_WER"]
            )
        if metric == "macro_f1":
            return 1.0 - stats[f"{self.hparams.selection_mode}_macro_f1"]
        raise ValueError(f"Unknown selection_metric '{metric}'.")

    def write_test_reports(self, stats):
        """Per mode: JSON, text and PNG reports; WER details; a summary."""
        folder = os.path.join(
            self.hparams.output_folder, f"test_{self.test_name}"
        )
        os.makedirs(folder, exist_ok=True)
        for mode in self.eval_modes:
            if self.emotion[mode].targets:
                self.emotion[mode].write_report(
                    os.path.join(folder, mode), f"{self.test_name} - {mode}"
                )
            if mode in TRANSCRIBING_MODES:
                with open(
                    os.path.join(folder, f"{mode}_wer.txt"),
                    "w",
                    encoding="utf-8",
                ) as f:
                    self.wer[mode].write_stats(f)
        if self.anchor_metrics.targets:  # the token's own decisions
            self.anchor_metrics.write_report(
                os.path.join(folder, "utterance_token"),
                f"{self.test_name} - utterance token",
            )
        with open(
            os.path.join(folder, "summary.json"), "w", encoding="utf-8"
        ) as f:
            json.dump(stats, f, indent=2)

    def test(self, name, test_data, loader_kwargs, modes=None):
        """Tests the best checkpoint on one test set, reports under ``name``.

        Arguments
        ---------
        name : str
            The test set's name (``test_<name>/`` holds its reports).
        test_data : DynamicItemDataset
            The test set.
        loader_kwargs : dict
            Its data loader options.
        modes : list of str, optional
            The modes to run (default: the phase's ``test_modes``).
        """
        self.test_name, self.test_modes = name, modes
        self.evaluate(
            test_data, min_key=SELECTION_KEY, test_loader_kwargs=loader_kwargs
        )


def normalize_words(text):
    """Lower-cased words without punctuation, for WER.

    Arguments
    ---------
    text : str
        A transcript.

    Returns
    -------
    list of str

    Example
    -------
    >>> normalize_words("Kids are talking, by the door!")
    ['kids', 'are', 'talking', 'by', 'the', 'door']
    """
    kept = "".join(c if c.isalnum() or c in " '" else " " for c in text.lower())
    return kept.split()


def class_weights_from(train_data, labels, weighting):
    """Inverse-frequency class weights with mean 1, or None.

    Arguments
    ---------
    train_data : speechbrain.dataio.dataset.DynamicItemDataset
        Training set with an ``emo`` key.
    labels : list of str
        Class names, in order.
    weighting : str
        ``none`` or ``balanced``.

    Returns
    -------
    torch.Tensor or None

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> data = DynamicItemDataset(
    ...     {"a": {"emo": "Sad"}, "b": {"emo": "Sad"}, "c": {"emo": "Happy"}})
    >>> class_weights_from(data, ["Happy", "Sad"], "balanced")
    tensor([1.3333, 0.6667])
    """
    if weighting == "none":
        return None
    if weighting != "balanced":
        raise ValueError(
            f"class_weighting must be none or balanced, not '{weighting}'."
        )
    with train_data.output_keys_as(["emo"]):
        counts = Counter(item["emo"] for item in train_data)
    weights = torch.tensor([1.0 / max(counts[label], 1) for label in labels])
    return weights / weights.mean()
