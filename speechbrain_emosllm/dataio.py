"""Datasets and loaders of an EmoSLLM phase (SpeechBrain's data IO).

Each manifest becomes a ``DynamicItemDataset`` whose pipelines read the
audio (or the cached frames), the emotion index and a tokenised prompt with
its answer; batches pad the span ids with IGNORE.

Authors
 * speechbrain-emosllm contributors 2026
"""

import os
import random
from functools import partial

import speechbrain as sb
import torch

from speechbrain_emosllm.audio import read_audio_file
from speechbrain_emosllm.features import load_cached_features


def data_pipelines(hparams, builder, training):
    """The dynamic items of a dataset: audio or frames, label, prompt.

    Arguments
    ---------
    hparams : dict
        Phase hyperparameters.
    builder : PromptBuilder
        Prompts and classes.
    training : bool
        Training examples draw a paraphrase, a label order and (with
        ``ser_task_share``) the SER-only task; evaluation ones are fixed.

    Returns
    -------
    list
        SpeechBrain data pipelines.
    """
    label_index = {label: i for i, label in enumerate(builder.labels)}

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
                f"{builder.labels} (check the manifest's 'emo' field and "
                "the recipe's classes)."
            )
        return label_index[emo]

    @sb.utils.data_pipeline.takes("wrd", "emo")
    @sb.utils.data_pipeline.provides("input_ids", "span_ids", "audio_start")
    def prompt_pipeline(wrd, emo):
        # DataLoader workers seed `random` differently.
        task = hparams["task"]
        if training and random.random() < hparams["ser_task_share"]:
            task = "ser"  # optional SER-only examples (P3 mixing)
        shuffle = training and hparams["random_train_prompts"]
        example = builder.training_example(
            task, wrd, emo, random if shuffle else None
        )
        yield torch.tensor(example["input_ids"])
        yield torch.tensor(example["span_ids"])
        yield example["audio_start"]

    @sb.utils.data_pipeline.takes("id", "wav")
    @sb.utils.data_pipeline.provides("feats")
    def feature_pipeline(utt_id, wav):
        return load_cached_features(hparams["feature_folder"], utt_id, wav)

    pipelines = [audio_pipeline, label_pipeline, prompt_pipeline]
    if hparams["feature_cache"]:
        pipelines.append(feature_pipeline)
    return pipelines


def manifest_dataset(path, hparams, builder, training):
    """A manifest as a ``DynamicItemDataset`` with the phase's pipelines.

    Arguments
    ---------
    path : str
        JSON manifest.
    hparams : dict
        Phase hyperparameters.
    builder : PromptBuilder
        Prompts and classes.
    training : bool
        Randomised training prompts, or fixed evaluation ones.

    Returns
    -------
    DynamicItemDataset
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Manifest {path} not found: run data preparation (unset "
            "skip_prep) or check manifest_folder."
        )
    data = sb.dataio.dataset.DynamicItemDataset.from_json(
        path, replacements={"data_root": hparams["data_folder"]}
    )
    for pipeline in data_pipelines(hparams, builder, training):
        data.add_dynamic_item(pipeline)
    # With the feature cache, batches carry frames instead of audio.
    audio_key = "feats" if hparams["feature_cache"] else "sig"
    data.set_output_keys(
        ["id", audio_key, "wrd", "emo", "emo_index", "input_ids"]
        + ["span_ids", "audio_start"]
    )
    return data


def dataio_prepare(hparams, builder):
    """The train, valid and test datasets of a phase.

    Arguments
    ---------
    hparams : dict
        Phase hyperparameters (manifests, sorting, duration limit).
    builder : PromptBuilder
        Prompts and classes.

    Returns
    -------
    (DynamicItemDataset, DynamicItemDataset, dict)
        Train and valid sets, and the test sets that exist by name.
    """
    sorting = hparams["sorting"]
    if sorting not in ("random", "ascending", "descending"):
        raise ValueError(
            f"Unknown sorting '{sorting}': use random, ascending or descending."
        )
    train = manifest_dataset(hparams["train_json"], hparams, builder, True)
    train = train.filtered_sorted(
        sort_key=None if sorting == "random" else "duration",
        reverse=sorting == "descending",
        key_max_value={"duration": hparams["max_train_seconds"]},
    )
    if sorting != "random":
        hparams["train_dataloader_opts"]["shuffle"] = False
    valid = manifest_dataset(hparams["valid_json"], hparams, builder, False)
    if hparams["valid_subset"]:
        valid = valid.filtered_sorted(select_n=hparams["valid_subset"])
    tests = {
        name: manifest_dataset(path, hparams, builder, False)
        for name, path in hparams["test_jsons"].items()
        if os.path.isfile(path)
    }
    return train, valid, tests


def padded_collate():
    """PaddedBatch that pads span ids with IGNORE (-1).

    Returns
    -------
    functools.partial
        A ``collate_fn``.

    Example
    -------
    >>> batch = padded_collate()([{"span_ids": torch.tensor([1, 2])},
    ...                           {"span_ids": torch.tensor([3])}])
    >>> batch.span_ids.data
    tensor([[ 1,  2],
            [ 3, -1]])
    """
    return partial(
        sb.dataio.batch.PaddedBatch,
        per_key_padding_kwargs={"span_ids": {"value": -1}},
    )


def loader_options(hparams, train_data):
    """DataLoader options of the train, valid and test stages.

    Arguments
    ---------
    hparams : dict
        Phase hyperparameters.
    train_data : DynamicItemDataset
        Training set (for SpeechBrain's ``DynamicBatchSampler``).

    Returns
    -------
    dict
        Stage name -> loader keyword arguments.
    """
    stages = {
        "train": hparams["train_dataloader_opts"],
        "valid": hparams["valid_dataloader_opts"],
        "test": hparams["test_dataloader_opts"],
    }
    options = {
        stage: dict(opts, collate_fn=padded_collate())
        for stage, opts in stages.items()
    }
    if hparams["dynamic_batching"]:
        from speechbrain.dataio.sampler import DynamicBatchSampler

        sampler = DynamicBatchSampler(
            train_data,
            length_func=lambda item: item["duration"],
            **hparams["dynamic_batch_sampler"],
        )
        options["train"] = {
            "batch_sampler": sampler,
            "num_workers": hparams["num_workers"],
            "collate_fn": padded_collate(),
        }
    return options
