"""What every EmoSLLM recipe does around its data preparation.

A recipe's ``train.py`` parses nothing itself: it gives ``run_phase`` the
command line, a function that writes its manifests and a function that
returns its class names. ``run_phase`` loads the phase YAML, builds the
datasets (prompts included), caches the frozen encoder's frames, trains
with ``speechbrain_emosllm.brain.EmoSLLM`` and tests every test set.

Authors
 * speechbrain-emosllm contributors 2026
"""

import json
import os

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml, resolve_references
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_emosllm.ablations import run_ablations, run_untrained_ablation
from speechbrain_emosllm.brain import EmoSLLM, class_weights_from
from speechbrain_emosllm.checkpoints import (
    find_best_checkpoint,
    transfer_parameters,
)
from speechbrain_emosllm.dataio import dataio_prepare, loader_options
from speechbrain_emosllm.decoding import EmotionDecoder
from speechbrain_emosllm.features import (
    cache_encoder_outputs,
    feature_cache_key,
)
from speechbrain_emosllm.hparams import compose_hparams
from speechbrain_emosllm.label_anchor import LabelAnchor, label_embeddings
from speechbrain_emosllm.labels import LABELS_FILE
from speechbrain_emosllm.modes import MODES, TRANSCRIBING_MODES
from speechbrain_emosllm.prompts import PromptBuilder
from speechbrain_emosllm.stacking import (
    POSTERIORS_FILE,
    attach_posteriors,
    check_stacking,
    read_posteriors,
    speaker_groups,
)
from speechbrain_emosllm.stopwatch import (
    PHASE_SECONDS_FILE,
    Stopwatch,
    write_phase_seconds,
)
from speechbrain_emosllm.utterance_token import PosteriorToken
from speechbrain_emosllm.utterance_token_fit import (
    TOKEN_FIT_FILE,
    fit_utterance_token,
)

logger = get_logger(__name__)

SELECTION_METRICS = ("loss", "WER", "macro_f1")


def check_phase_keys(hparams):
    """Fails before any work on a key that names an unknown mode or metric.

    Arguments
    ---------
    hparams : dict
        Phase hyperparameters.

    Example
    -------
    >>> try:
    ...     check_phase_keys({"valid_modes": ["ser_only"], "test_modes": [],
    ...                       "selection_metric": "macro_f1",
    ...                       "selection_mode": "joint_orcale"})
    ... except ValueError as error:
    ...     print(str(error)[:43])
    selection_mode 'joint_orcale' is not one of
    """
    for key in ("valid_modes", "test_modes"):
        unknown = [m for m in hparams[key] if m not in MODES]
        if unknown:
            raise ValueError(
                f"{key} has unknown modes {unknown}; use {', '.join(MODES)}."
            )
    metric = hparams["selection_metric"]
    if metric not in SELECTION_METRICS:
        raise ValueError(
            f"Unknown selection_metric '{metric}'; use "
            f"{', '.join(SELECTION_METRICS)}."
        )
    mode = hparams["selection_mode"]
    if metric == "macro_f1" and mode not in hparams["valid_modes"]:
        raise ValueError(
            f"selection_mode '{mode}' is not one of valid_modes "
            f"{list(hparams['valid_modes'])} (selection_metric is {metric})."
        )
    transcribing = set(TRANSCRIBING_MODES) & set(hparams["valid_modes"])
    if metric == "WER" and not transcribing:
        raise ValueError(
            "selection_metric WER needs a transcribing mode "
            f"({', '.join(TRANSCRIBING_MODES)}) in valid_modes."
        )


def load_phase(argv, defaults=None, forced=None):
    """Parses a recipe's command line and loads its phase YAML.

    The phase file is merged with its base and presets, the result is
    resolved and saved as ``hyperparams.yaml`` in the output folder, and a
    missing predecessor fails here, before data preparation and caching.

    Arguments
    ---------
    argv : list of str
        ``sys.argv[1:]``: the phase YAML, then SpeechBrain options and
        overrides.
    defaults : dict, optional
        Overrides that the command line may replace.
    forced : dict, optional
        Overrides that replace the command line's.

    Returns
    -------
    (dict, dict)
        The hyperparameters and the run options.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    # Joins the process group when launched by torchrun (no-op otherwise).
    sb.utils.distributed.ddp_init_group(run_opts)
    merged_yaml, overrides = compose_hparams(hparams_file, overrides)
    overrides = {**(defaults or {}), **overrides, **(forced or {})}
    merged_yaml = merged_yaml.getvalue()
    hparams = load_hyperpyyaml(merged_yaml, overrides)
    check_phase_keys(hparams)
    sb.create_experiment_directory(hparams["output_folder"])
    if if_main_process():
        with open(
            os.path.join(hparams["output_folder"], "hyperparams.yaml"),
            "w",
            encoding="utf-8",
        ) as f:
            f.write(resolve_references(merged_yaml, overrides).getvalue())
    if hparams["previous_phase_folder"] and not run_opts.get("test_only"):
        # The weights are loaded later, in `EmoSLLM.warm_start`.
        find_best_checkpoint(hparams["previous_phase_folder"])
    return hparams, run_opts


def feature_folder(hparams):
    """The keyed feature-cache folder of the phase's encoder.

    Arguments
    ---------
    hparams : dict
        Phase hyperparameters.

    Returns
    -------
    str
    """
    return os.path.join(
        hparams["feature_cache_folder"],
        feature_cache_key(
            hparams["encoder"],
            hparams["encoder_source"],
            hparams["sample_rate"],
            hparams["feature_cache_dtype"],
        ),
    )


def cache_features(encoder, device, hparams, datasets):
    """Encodes every clip once with the frozen encoder (main process).

    Arguments
    ---------
    encoder : torch.nn.Module
        The frozen encoder, on ``device``.
    device : str
        Where it runs.
    hparams : dict
        Phase hyperparameters (``feature_folder``...).
    datasets : list of DynamicItemDataset
        Every dataset of the phase.
    """
    for data in datasets:
        run_on_main(
            cache_encoder_outputs,
            kwargs={
                "encoder": encoder,
                "dataset": data,
                "folder": hparams["feature_folder"],
                "batch_size": hparams["test_batch_size"],
                "device": device,
                "dtype": hparams["feature_cache_dtype"],
            },
        )


def run_phase(argv, prepare_data, class_names):
    """Runs one phase of a recipe: prepare, cache, start, train, test.

    Arguments
    ---------
    argv : list of str
        The recipe's command line (``sys.argv[1:]``).
    prepare_data : callable
        ``prepare_data(hparams)`` writes the manifests (called on the main
        process only, unless ``skip_prep``).
    class_names : callable
        ``class_names(hparams)`` returns the emotion classes, in order.

    Returns
    -------
    EmoSLLM
        The trained brain.
    """
    hparams, run_opts = load_phase(argv)
    if not hparams["skip_prep"]:
        run_on_main(prepare_data, args=[hparams])
    labels = class_names(hparams)
    if if_main_process():  # read by export
        path = os.path.join(hparams["output_folder"], LABELS_FILE)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(labels, f)
    speech_llm, mapper = hparams["speech_llm"], hparams["qpmapper"]
    builder = PromptBuilder(
        speech_llm.tokenizer,
        labels,
        hparams["n_queries"],
        system_prompt=hparams["system_prompt"],
        chat_template_kwargs=hparams["llm_chat_template_kwargs"],
    )
    if hparams["feature_cache"]:
        hparams["feature_folder"] = feature_folder(hparams)
    train_data, valid_data, test_sets = dataio_prepare(hparams, builder)
    brain, class_embeddings = make_brain(
        hparams, run_opts, labels, builder, train_data
    )
    watch = Stopwatch()
    if hparams["feature_cache"]:
        # The encoder is frozen in every phase: encode each clip once.
        with watch("encoding"):
            cache_features(
                brain.modules.encoder,
                brain.device,
                hparams,
                [train_data, valid_data, *test_sets.values()],
            )
    fresh = hparams["checkpointer"].find_checkpoint() is None
    stacked = check_stacking(hparams)
    posteriors = None
    if fresh:
        # A fresh phase; a resumed one recovers its own checkpoint in fit.
        warm_start(hparams)
        if isinstance(mapper.utterance_token, PosteriorToken):
            datasets = {"train": train_data, "valid": valid_data}
            with watch("token_fit"):
                posteriors = fit_token(
                    hparams, datasets, labels, class_embeddings
                )
    if stacked:  # a resumed phase reads what its fit wrote
        attach_posteriors(train_data, posteriors or read_posteriors(hparams))
    options = loader_options(hparams, train_data)
    ablations = hparams.get("test_ablations") or []
    with watch("untrained_ablation"):
        run_untrained_ablation(
            brain, ablations, test_sets, options["test"], fresh
        )
    with watch("training"):
        brain.fit(
            brain.hparams.epoch_counter,
            train_data,
            valid_data,
            train_loader_kwargs=options["train"],
            valid_loader_kwargs=options["valid"],
        )
    with watch("test"):
        for name, test_data in test_sets.items():
            brain.test(name, test_data, options["test"])
    with watch("output_ablations"):
        run_ablations(brain, ablations, train_data, test_sets, options["test"])
    if if_main_process():
        path = os.path.join(hparams["output_folder"], PHASE_SECONDS_FILE)
        write_phase_seconds(path, watch.rounded(), brain.stage_seconds)
    leave_process_group()
    return brain


def make_brain(hparams, run_opts, labels, builder, train_data):
    """The phase's ``EmoSLLM`` brain, with its label anchor.

    Arguments
    ---------
    hparams : dict
        Phase hyperparameters.
    run_opts : dict
        SpeechBrain's run options (device, DDP...).
    labels : list of str
        Class names.
    builder : PromptBuilder
        The phase's prompts.
    train_data : DynamicItemDataset
        The training clips (class weights).

    Returns
    -------
    EmoSLLM
        The brain.
    torch.Tensor
        (n_classes, hidden) the LLM's embeddings of the class names.
    """
    speech_llm, mapper = hparams["speech_llm"], hparams["qpmapper"]
    table = speech_llm.hf_model.get_input_embeddings().weight
    class_embeddings = label_embeddings(table, builder.label_token_ids())
    label_anchor = None
    if mapper.utterance_token is not None or hparams["label_anchor_weight"]:
        label_anchor = LabelAnchor(
            class_embeddings,
            scale=hparams["label_anchor_scale"],
            token_index=mapper.utterance_token_index,
        )
    brain = EmoSLLM(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        labels=labels,
        decoder=EmotionDecoder(speech_llm, builder, hparams["max_new_tokens"]),
        label_anchor=label_anchor,
        class_weights=class_weights_from(
            train_data, labels, hparams["class_weighting"]
        ),
    )
    if mapper.output_norm:
        # Before any checkpoint is loaded: a trained gain replaces it.
        mapper.match_scale(table)
    return brain, class_embeddings


def warm_start(hparams):
    """Loads the previous phase's best QPMapper (and LoRA) weights.

    A ``PosteriorToken``'s head is left out: it is fitted afresh, and the
    predecessor's head may have another shape (a linear token). The
    token's statistics are reset: the predecessor may have seen another
    corpus (the RAVDESS phase starts from eSpeak).

    Arguments
    ---------
    hparams : dict
        Phase hyperparameters (``previous_phase_folder``, the modules).
    """
    folder = hparams["previous_phase_folder"]
    if folder is None:
        return
    checkpoint = find_best_checkpoint(folder)
    mapper = hparams["qpmapper"]
    refit = None
    if isinstance(mapper.utterance_token, PosteriorToken):
        refit = {"qpmapper": "utterance_token.head."}
    loaded = transfer_parameters(
        checkpoint,
        {"qpmapper": mapper, "speech_llm": hparams["speech_llm"]},
        refit=refit,
    )
    mapper.reset_statistics()
    logger.info(
        "Phase %s starts from %s (%s).",
        hparams["phase"],
        checkpoint.path,
        ", ".join(loaded),
    )


def fit_token(hparams, datasets, labels, class_embeddings):
    """Fits the phase's ``PosteriorToken`` as a probe of the cached frames.

    See ``speechbrain_emosllm.utterance_token_fit``; deterministic, so every
    process fits the same token. The report goes to
    ``<output_folder>/utterance_token_fit.json``.

    Arguments
    ---------
    hparams : dict
        Phase hyperparameters.
    datasets : dict
        ``train`` and ``valid`` -> DynamicItemDataset.
    labels : list of str
        Class names.
    class_embeddings : torch.Tensor
        (n_classes, hidden) class-name embeddings.

    Returns
    -------
    dict or None
        With ``out_of_fold_token``, the training clips' out-of-fold
        posteriors (also written to ``POSTERIORS_FILE``).
    """
    if not hparams["feature_cache"]:
        raise ValueError(
            "A PosteriorToken is fitted on the feature cache: set "
            "feature_cache: True."
        )
    out_of_fold = bool(hparams.get("out_of_fold_token"))
    # The token's choices are cross-validated over the training speakers.
    speakers = speaker_groups(datasets["train"])
    if speakers is None:
        if out_of_fold:
            raise ValueError(
                "out_of_fold_token groups the training clips by speaker: "
                f"{hparams['train_json']} has no spk_id field"
            )
        logger.info("No spk_id: the token's choices are made on valid.")
    report = fit_utterance_token(
        hparams["qpmapper"],
        hparams["feature_folder"],
        datasets,
        labels,
        class_embeddings.detach(),
        speakers,
        out_of_fold,
    )
    posteriors = report.pop("posteriors", None)
    logger.info("Utterance token fitted as a linear probe: %s", report)
    if if_main_process():
        path = os.path.join(hparams["output_folder"], TOKEN_FIT_FILE)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        if posteriors is not None:
            path = os.path.join(hparams["output_folder"], POSTERIORS_FILE)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(posteriors, f)
    return posteriors


def leave_process_group():
    """Waits for every process, then leaves the torchrun process group.

    SpeechBrain joins the group (``ddp_init_group``) but never leaves it,
    and PyTorch asks for ``destroy_process_group`` before exit (it warns,
    and may leak the group's resources, otherwise). The barrier first lets
    no process exit while another still talks to it. Called at the end of a
    successful phase only: after an error, a barrier would wait for
    processes that will never come.

    Example
    -------
    >>> leave_process_group()  # outside torchrun: nothing to leave
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
