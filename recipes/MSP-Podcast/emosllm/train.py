#!/usr/bin/env python3
"""Recipe for training EmoSLLM (arXiv 2508.14130) on MSP-Podcast.

Raw audio goes through a frozen SSL encoder (WavLM Large by default), the
QPMapper pools its frames into 32 embeddings, and these are spliced into the
user turn of a chat prompt for a frozen LLM (Llama-3.2-3B-Instruct by
default), adapted with LoRA from phase 2 on. One script runs the three
curriculum phases, each with its own YAML file:

    python train.py hparams/p1_asr.yaml --data_folder=/path/to/MSP-Podcast
    python train.py hparams/p2_asr_lora.yaml --data_folder=/path/to/MSP-Podcast
    python train.py hparams/p3_joint.yaml --data_folder=/path/to/MSP-Podcast

Phases 2 and 3 start from the best checkpoint of the phase before. The test
stage reports, for each inference mode, accuracy, macro-F1, per-class F1,
confusion matrices (text and PNG), WER and the invalid-answer rate.

Authors
 * speechbrain-emosllm contributors 2026
"""

import json
import os
import random
import sys
from collections import Counter

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml, resolve_references
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_emosllm import EmotionMetrics, PromptBuilder
from speechbrain_emosllm.audio import read_audio_file
from speechbrain_emosllm.checkpoints import (
    SELECTION_KEY,
    find_best_checkpoint,
    transfer_parameters,
)
from speechbrain_emosllm.decoding import TRANSCRIBING_MODES, EmotionDecoder
from speechbrain_emosllm.features import (
    cache_encoder_outputs,
    feature_cache_key,
    load_cached_features,
)
from speechbrain_emosllm.hparams import compose_hparams
from speechbrain_emosllm.labels import emotion_labels
from speechbrain_emosllm.speech_llm import relative_to_absolute

logger = get_logger(__name__)


class EmoSLLM(sb.Brain):
    """Trains and evaluates the QPMapper and LoRA weights of EmoSLLM."""

    def compute_forward(self, batch, stage):
        """Encodes the audio (or reads cached frames) and pools them."""
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
        return self.modules.qpmapper(frames.float(), lengths)

    def compute_objectives(self, audio_embeddings, batch, stage):
        """Answer loss (weighted spans) and, in evaluation, every mode."""
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
        if stage != sb.Stage.TRAIN:
            self.evaluate_modes(audio_embeddings, batch)
        return out["loss"]

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
            out = self.decoder.decode(
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

    def on_stage_start(self, stage, epoch=None):
        """Resets the evaluation metrics."""
        if stage == sb.Stage.TRAIN:
            return
        self.eval_modes = (
            self.hparams.valid_modes
            if stage == sb.Stage.VALID
            else self.hparams.test_modes
        )
        self.emotion = {m: EmotionMetrics(self.labels) for m in self.eval_modes}
        self.wer = {m: self.hparams.wer_computer() for m in self.eval_modes}

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
        return stats

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, anneals the learning rate, checkpoints, writes reports."""
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats.update(self.summarize_modes())
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
        with open(
            os.path.join(folder, "summary.json"), "w", encoding="utf-8"
        ) as f:
            json.dump(stats, f, indent=2)

    def on_fit_start(self):
        """Recovers this phase's checkpoint or warm-starts from the last."""
        super().on_fit_start()
        if self.checkpointer.find_checkpoint() is None:
            self.warm_start()

    def warm_start(self):
        """Loads the previous phase's best QPMapper (and LoRA) weights."""
        folder = self.hparams.previous_phase_folder
        if folder is None:
            return
        checkpoint = find_best_checkpoint(folder)
        loaded = transfer_parameters(
            checkpoint,
            {
                "qpmapper": self.modules.qpmapper,
                "speech_llm": self.modules.speech_llm,
            },
        )
        logger.info(
            "Phase %s starts from %s (%s).",
            self.hparams.phase,
            checkpoint.path,
            ", ".join(loaded),
        )


def normalize_words(text):
    """Lower-cased words without punctuation, for WER."""
    kept = "".join(c if c.isalnum() or c in " '" else " " for c in text.lower())
    return kept.split()


def class_weights_from(train_data, labels, weighting):
    """Inverse-frequency class weights with mean 1, or None."""
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


def dataio_prepare(hparams, builder):
    """Builds the datasets and their pipelines (prompts included).

    With ``feature_cache``, the datasets also provide ``feats`` (frames read
    from the cache folder) and batches carry them instead of audio.
    """
    labels = builder.labels
    label_index = {label: i for i, label in enumerate(labels)}

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return read_audio_file(wav, hparams["sample_rate"])

    @sb.utils.data_pipeline.takes("id", "emo")
    @sb.utils.data_pipeline.provides("emo_index")
    def label_pipeline(utt_id, emo):
        if emo not in label_index:
            raise ValueError(
                f"Utterance {utt_id}: emotion '{emo}' is not one of "
                f"{labels} (check the manifest's 'emo' field and n_classes)."
            )
        return label_index[emo]

    def prompt_pipeline(shuffle):
        @sb.utils.data_pipeline.takes("wrd", "emo")
        @sb.utils.data_pipeline.provides("input_ids", "span_ids", "audio_start")
        def pipeline(wrd, emo):
            # Training draws a paraphrase and a label order per example
            # (DataLoader workers seed `random` differently).
            task = hparams["task"]
            if shuffle and random.random() < hparams["ser_task_share"]:
                task = "ser"  # optional SER-only examples (P3 mixing)
            example = builder.training_example(
                task,
                wrd,
                emo,
                random if shuffle and hparams["random_train_prompts"] else None,
            )
            yield torch.tensor(example["input_ids"])
            yield torch.tensor(example["span_ids"])
            yield example["audio_start"]

        return pipeline

    @sb.utils.data_pipeline.takes("id")
    @sb.utils.data_pipeline.provides("feats")
    def feature_pipeline(utt_id):
        return load_cached_features(hparams["feature_folder"], utt_id)

    audio_key = "feats" if hparams["feature_cache"] else "sig"
    keys = [
        "id",
        audio_key,
        "wrd",
        "emo",
        "emo_index",
        "input_ids",
        "span_ids",
        "audio_start",
    ]

    def dataset(path, shuffle):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Manifest {path} not found: run data preparation (unset "
                "skip_prep) or check manifest_folder."
            )
        data = sb.dataio.dataset.DynamicItemDataset.from_json(
            path, replacements={"data_root": hparams["data_folder"]}
        )
        pipelines = [audio_pipeline, label_pipeline, prompt_pipeline(shuffle)]
        if hparams["feature_cache"]:
            pipelines.append(feature_pipeline)
        for pipeline in pipelines:
            data.add_dynamic_item(pipeline)
        data.set_output_keys(keys)
        return data

    sorting = hparams["sorting"]
    if sorting not in ("random", "ascending", "descending"):
        raise ValueError(
            f"Unknown sorting '{sorting}': use random, ascending or descending."
        )
    train = dataset(hparams["train_json"], True).filtered_sorted(
        sort_key=None if sorting == "random" else "duration",
        reverse=sorting == "descending",
        key_max_value={"duration": hparams["max_train_seconds"]},
    )
    if sorting != "random":
        hparams["train_dataloader_opts"]["shuffle"] = False
    valid = dataset(hparams["valid_json"], False)
    if hparams["valid_subset"]:
        valid = valid.filtered_sorted(select_n=hparams["valid_subset"])
    tests = {
        name: dataset(path, False)
        for name, path in hparams["test_jsons"].items()
        if os.path.isfile(path)
    }
    return train, valid, tests


def padded_collate():
    """PaddedBatch that pads span ids with IGNORE (-1)."""
    from functools import partial

    return partial(
        sb.dataio.batch.PaddedBatch,
        per_key_padding_kwargs={"span_ids": {"value": -1}},
    )


def main():
    """Parses arguments, prepares data, trains and tests one phase."""
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    # Joins the process group when launched by torchrun (no-op otherwise).
    sb.utils.distributed.ddp_init_group(run_opts)
    merged_yaml, overrides = compose_hparams(hparams_file, overrides)
    merged_yaml = merged_yaml.getvalue()
    hparams = load_hyperpyyaml(merged_yaml, overrides)
    sb.create_experiment_directory(hparams["output_folder"])
    if if_main_process():
        # Save the phase file merged with its base and presets, resolved.
        with open(
            os.path.join(hparams["output_folder"], "hyperparams.yaml"),
            "w",
            encoding="utf-8",
        ) as f:
            f.write(resolve_references(merged_yaml, overrides).getvalue())
    if hparams["previous_phase_folder"] and not run_opts.get("test_only"):
        # Fail before data preparation and feature caching, not after them;
        # the weights are loaded later, in `EmoSLLM.warm_start`.
        find_best_checkpoint(hparams["previous_phase_folder"])

    if not hparams["skip_prep"]:
        from msp_podcast_prepare import prepare_msp_podcast

        run_on_main(
            prepare_msp_podcast,
            kwargs={
                "data_folder": hparams["data_folder"],
                "save_folder": hparams["manifest_folder"],
                "n_classes": hparams["n_classes"],
            },
        )

    labels = emotion_labels(hparams["n_classes"])
    speech_llm = hparams["speech_llm"]
    builder = PromptBuilder(
        speech_llm.tokenizer,
        labels,
        hparams["n_queries"],
        system_prompt=hparams["system_prompt"],
        chat_template_kwargs=hparams["llm_chat_template_kwargs"],
    )
    if hparams["feature_cache"]:
        hparams["feature_folder"] = os.path.join(
            hparams["feature_cache_folder"],
            feature_cache_key(
                hparams["encoder"],
                hparams["encoder_source"],
                hparams["sample_rate"],
                hparams["feature_cache_dtype"],
            ),
        )
    train_data, valid_data, test_sets = dataio_prepare(hparams, builder)

    brain = EmoSLLM(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.labels = labels
    brain.decoder = EmotionDecoder(
        speech_llm, builder, hparams["max_new_tokens"]
    )
    if hparams["feature_cache"]:
        # The encoder is frozen in every phase: encode each clip once.
        for data in (train_data, valid_data, *test_sets.values()):
            run_on_main(
                cache_encoder_outputs,
                kwargs={
                    "encoder": brain.modules.encoder,
                    "dataset": data,
                    "folder": hparams["feature_folder"],
                    "batch_size": hparams["test_batch_size"],
                    "device": brain.device,
                    "dtype": hparams["feature_cache_dtype"],
                },
            )
    brain.class_weights = class_weights_from(
        train_data, labels, hparams["class_weighting"]
    )
    loader_opts = {
        key: dict(
            hparams[f"{key}_dataloader_opts"], collate_fn=padded_collate()
        )
        for key in ("train", "valid", "test")
    }
    if hparams["dynamic_batching"]:
        from speechbrain.dataio.sampler import DynamicBatchSampler

        sampler = DynamicBatchSampler(
            train_data,
            length_func=lambda item: item["duration"],
            **hparams["dynamic_batch_sampler"],
        )
        loader_opts["train"] = {
            "batch_sampler": sampler,
            "num_workers": hparams["num_workers"],
            "collate_fn": padded_collate(),
        }

    brain.fit(
        brain.hparams.epoch_counter,
        train_data,
        valid_data,
        train_loader_kwargs=loader_opts["train"],
        valid_loader_kwargs=loader_opts["valid"],
    )
    for name, test_data in test_sets.items():
        brain.test_name = name
        brain.evaluate(
            test_data,
            min_key=SELECTION_KEY,
            test_loader_kwargs=loader_opts["test"],
        )


if __name__ == "__main__":
    main()
