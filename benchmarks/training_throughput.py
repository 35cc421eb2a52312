"""Training-speed benchmark of the recipe (ratios measured in one run).

    python benchmarks/training_throughput.py [--scale demo|paper|both]
        [--tokenizer FOLDER]

Everything is built from configs with random weights (no download) and
timed on this machine, one configuration per subprocess so that each peak
memory is its own. The batches are phase-3 joint examples of 5-10 s clips
(transcripts of 2.5 words per second; 4 classes at the demo's scale, the
8 of the MSP-Podcast protocol at the paper's), tokenised by a real
tokenizer when one is given (by default the demo's SmolLM2 tokenizer, once
the demo has run) so that the prompts' token counts are realistic. It
prints, at the demo's scale (Whisper tiny.en + SmolLM2-135M, batch 8) and
at the paper's (WavLM Large + Llama-3.2-3B, float32, batch 2):

1. recipe step / bare loop (demo scale): one ``Brain.fit_batch`` of the
   recipe against a hand-written PyTorch + peft step doing the same math on
   the same batch (target <= 1.10);
2. cached epoch / online epoch: an epoch on cached encoder frames against
   one that runs the frozen encoder, and the encoder's share of the online
   step, which bounds what any cache can save (target: ratio <= 1 - that
   share + 0.05);
3. QPMapper / concat connector: training clips per second with our
   32-query QPMapper against SpeechBrain's LibriSpeech speech-LLM connector
   (concatenate 5 frames -> 10 Hz, 2-layer MLP), same encoder and LLM. The
   concat connector is timed twice: with as many audio tokens as the clips'
   mean length (ideal length bucketing) and with the timed batch's padded
   length (what it does on a random batch). Each line gives the
   connector's own forward+backward time and the LLM's sequence length, and
   a straight-line fit of step time against sequence length splits the
   step into a per-step part (streaming the frozen weights) and a
   per-token part. The token bound is the speed-up the shorter sequence
   alone would give on that line (a connector can only save the per-token
   part); target: the measured speed-up >= 0.9 of the bound at the paper's
   scale;
4. peak memory of each run.
"""

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

import ruamel.yaml
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "MSP-Podcast", "emosllm")
# Batch of the bf16 / 4-bit measurements (the GPU check).
LOW_BATCH = 8
DEMO_TOKENIZER = os.path.join(ROOT, "results", "demo", "assets", "smollm2-135m")
SCALES = {
    "demo": {
        "encoder": "whisper_tiny_en",
        "llm": "smollm2-135m-instruct",
        "batch": 8,
        "steps": 6,
        "clips": 32,
        "classes": 4,
    },
    "paper": {
        "encoder": "wavlm_large",
        "llm": "llama-3.2-3b-instruct",
        "batch": 2,
        "steps": 2,
        "clips": 4,
        "classes": 8,
    },
}


def preset(kind, name):
    from speechbrain_emosllm.hparams import preset_path

    return ruamel.yaml.YAML().load(open(preset_path(kind, name)))


def save_random_models(scale, folder):
    """Random-weight encoder and LLM folders built from preset configs."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    paths = {}
    for kind, key in (("encoder_preset", "encoder"), ("llm_preset", "llm")):
        config = dict(preset(kind, SCALES[scale][key])[f"{key}_config"])
        model_type = config.pop("model_type")
        path = os.path.join(folder, key)
        if not os.path.isdir(path):
            config_object = AutoConfig.for_model(model_type, **config)
            if model_type == "whisper":
                from transformers import WhisperForConditionalGeneration

                model = WhisperForConditionalGeneration(config_object)
            elif key == "llm":
                model = AutoModelForCausalLM.from_config(config_object)
            else:
                model = AutoModel.from_config(config_object)
            model.save_pretrained(path)
            if model_type == "whisper":
                from transformers import WhisperFeatureExtractor

                WhisperFeatureExtractor().save_pretrained(path)
            elif key == "encoder":
                from transformers import Wav2Vec2FeatureExtractor

                Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(
                    path
                )
        paths[key] = path
    return paths


def install_tokenizer(llm_folder, source):
    """Puts the tokenizer that the benchmark's prompts use in the LLM folder.

    Sequence lengths, hence step times, depend on how many tokens the
    prompts take: a real tokenizer (e.g. SmolLM2's, from the demo's assets)
    gives realistic counts; the tiny offline one splits text more finely.
    """
    from transformers import AutoTokenizer

    from speechbrain_emosllm.testing import make_tiny_tokenizer

    for name in os.listdir(llm_folder):
        if name.startswith(("tokenizer", "special_tokens", "chat_template")):
            os.remove(os.path.join(llm_folder, name))
    if source:
        AutoTokenizer.from_pretrained(source).save_pretrained(llm_folder)
    else:
        make_tiny_tokenizer(2000).save_pretrained(llm_folder)


def write_clips(folder, count, n_classes):
    """5-10 s tone clips and a manifest (train = valid = test).

    Transcripts have 2.5 words per second, about conversational speech.
    """
    from speechbrain_emosllm.labels import emotion_labels
    from speechbrain_emosllm.testing import write_tone_clips

    rng = random.Random(0)
    specs = [(f"clip{i:03d}", rng.uniform(5, 10), i % 4) for i in range(count)]
    paths = write_tone_clips(os.path.join(folder, "audio"), specs)
    labels = emotion_labels(n_classes)
    words = "the cat sat on the mat and looked at the dog by the door".split()
    manifest = {
        utt: {
            "wav": paths[utt],
            "duration": seconds,
            "wrd": " ".join(
                rng.choice(words) for _ in range(round(2.5 * seconds))
            ),
            "emo": labels[k],
            "spk_id": "0",
        }
        for utt, seconds, k in specs
    }
    for name in ("train", "valid", "test"):
        json.dump(manifest, open(os.path.join(folder, f"{name}.json"), "w"))
    return folder


def concat_token_count(work, scale, padded):
    """Audio tokens of the 10 Hz concat connector for the timed batch.

    ``padded``: the first batch's longest clip (SpeechBrain's connector
    downsamples the padded batch); otherwise the clips' mean length (what
    ideal length bucketing would give).
    """
    config = SCALES[scale]
    manifest = json.load(open(os.path.join(work, "train.json")))
    seconds = [entry["duration"] for entry in manifest.values()]
    if padded:
        return math.ceil(10 * max(seconds[: config["batch"]]))
    timed_clips = seconds[: config["clips"]]
    return math.ceil(10 * sum(timed_clips) / len(timed_clips))


def benchmark_yaml(scale, work, cached, connector, precision, batch_size):
    """Phase 3's YAML text, overrides and run options for one setting.

    The connector and precision patch the composed text (``load_brain``
    has what they mean).
    """
    from speechbrain_emosllm.hparams import compose_hparams

    config = SCALES[scale]
    models = save_random_models(scale, os.path.join(work, "models"))
    # encoder_dim / llm_dim follow from the presets' configs, which the
    # random models were built from.
    overrides = {
        "data_folder": work,
        "manifest_folder": work,
        "skip_prep": True,
        "experiment_folder": os.path.join(work, f"exp_{connector}"),
        "n_classes": config["classes"],
        "encoder_preset": config["encoder"],
        "encoder_source": models["encoder"],
        "llm_preset": config["llm"],
        "llm_source": models["llm"],
        "batch_size": batch_size,
        "num_workers": 0,
        "feature_cache": cached,
        "feature_cache_folder": os.path.join(work, "feature_cache"),
        "qpmapper_dropout": 0.0,
        "lora_dropout": 0.0,
    }
    if connector.startswith("concat"):
        overrides["n_queries"] = concat_token_count(
            work, scale, padded=connector == "concat_padded"
        )
    stream, overrides = compose_hparams(
        os.path.join(RECIPE, "hparams", "p3_joint.yaml"), overrides
    )
    text = stream.getvalue()
    if connector.startswith("concat"):
        # SpeechBrain's LibriSpeech train_speechllm.py connector: concatenate
        # 5 consecutive 50 Hz frames (10 Hz) and project with a 2-layer MLP.
        text = text.replace(
            "qpmapper: !new:speechbrain_emosllm.QPMapper",
            "qpmapper: !new:concat_connector.ConcatConnector",
        )
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    run_opts = {"device": "cuda" if torch.cuda.is_available() else "cpu"}
    if precision in ("bf16", "4bit"):
        overrides["llm_dtype"] = "bfloat16"
        run_opts["precision"] = "bf16"
    if precision == "4bit":
        if "quantization_config: null" not in text:
            raise SystemExit("quantization_config: null not found in YAML")
        text = text.replace(
            "quantization_config: null",
            "quantization_config: !new:transformers.BitsAndBytesConfig\n"
            "    load_in_4bit: True\n"
            "    bnb_4bit_quant_type: nf4\n"
            "    bnb_4bit_compute_dtype: !name:torch.bfloat16",
        )
    return text, overrides, run_opts


def load_brain(
    scale, work, cached, connector="qpmapper", precision="float32", batch=None
):
    """The recipe's Brain (phase 3 hyperparameters) on the benchmark data.

    ``precision``: ``float32``; ``bf16`` (frozen LLM in bfloat16, autocast,
    trainable weights in float32); ``4bit`` (QLoRA: NF4 LLM, bf16 compute).
    On the GPU when there is one.
    """
    from hyperpyyaml import load_hyperpyyaml

    from speechbrain_emosllm.brain import EmoSLLM
    from speechbrain_emosllm.dataio import dataio_prepare, padded_collate
    from speechbrain_emosllm.decoding import EmotionDecoder
    from speechbrain_emosllm.labels import emotion_labels
    from speechbrain_emosllm.prompts import PromptBuilder

    config = SCALES[scale]
    batch_size = batch or config["batch"]
    text, overrides, run_opts = benchmark_yaml(
        scale, work, cached, connector, precision, batch_size
    )
    hparams = load_hyperpyyaml(text, overrides)
    labels = emotion_labels(config["classes"])
    builder = PromptBuilder(
        hparams["speech_llm"].tokenizer, labels, hparams["n_queries"]
    )
    if cached:
        from speechbrain_emosllm.features import feature_cache_key

        hparams["feature_folder"] = os.path.join(
            hparams["feature_cache_folder"],
            feature_cache_key(
                hparams["encoder"], hparams["encoder_source"], 16000, "float16"
            ),
        )
    train_data, _, _ = dataio_prepare(hparams, builder)
    brain = EmoSLLM(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=None,
        labels=labels,
        decoder=EmotionDecoder(
            hparams["speech_llm"], builder, hparams["max_new_tokens"]
        ),
    )
    brain.init_optimizers()
    brain.modules.train()
    if cached:
        from speechbrain_emosllm.features import cache_encoder_outputs

        cache_encoder_outputs(
            hparams["encoder"],
            train_data,
            hparams["feature_folder"],
            batch_size,
            device=brain.device,
        )
    loader = torch.utils.data.DataLoader(
        train_data,
        batch_size=batch_size,
        collate_fn=padded_collate(),
    )
    return brain, loader, hparams


def bare_step_factory(hparams, optimizer_params):
    """A hand-written PyTorch + peft step with the recipe's math."""
    mapper = hparams["qpmapper"]
    llm = hparams["speech_llm"]
    peft_model = llm.model
    optimizer = torch.optim.AdamW(optimizer_params, lr=1e-4, weight_decay=0.01)

    def step(batch):
        frames, lengths = batch.feats
        audio = mapper(frames.float(), lengths)
        ids, relative = batch.input_ids
        spans, _ = batch.span_ids
        time_len = ids.shape[1]
        lens = torch.round(relative * time_len).long()
        start = torch.as_tensor(batch.audio_start)
        text = peft_model.get_input_embeddings()(ids)
        offset = torch.arange(time_len)[None] - start[:, None]
        is_audio = ((offset >= 0) & (offset < audio.shape[1]))[..., None]
        gathered = audio.gather(
            1,
            offset.clamp(0, audio.shape[1] - 1)[..., None].expand(
                -1, -1, text.shape[-1]
            ),
        )
        embeds = torch.where(is_audio, gathered, text)
        mask = (torch.arange(time_len)[None] < lens[:, None]).long()
        logits = peft_model(inputs_embeds=embeds, attention_mask=mask).logits
        targets = ids[:, 1:].masked_fill(spans[:, 1:] < 0, -100)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(),
            targets.flatten(),
            ignore_index=-100,
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(optimizer_params, 5.0)
        optimizer.step()
        return loss

    return step


def timed(function, repeats):
    function()  # warm-up
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronize()
    return (time.perf_counter() - start) / repeats


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(name, scale, work):
    """Runs one measurement (in its own process) and returns a dict."""
    torch.manual_seed(0)
    steps = SCALES[scale]["steps"]
    if name == "step_vs_bare":
        brain, loader, hparams = load_brain(scale, work, cached=True)
        batch = next(iter(loader))
        recipe_s = timed(lambda: brain.fit_batch(batch), steps)
        params = [p for p in brain.modules.parameters() if p.requires_grad]
        bare = bare_step_factory(hparams, params)
        bare_s = timed(lambda: bare(batch), steps)
        return {"recipe_step_s": recipe_s, "bare_step_s": bare_s}
    if name in ("epoch_cached", "epoch_online"):
        cached = name == "epoch_cached"
        brain, loader, hparams = load_brain(scale, work, cached=cached)
        # The "epoch" is the scale's first `clips` clips (the folder may
        # hold more for the batch-8 measurements).
        config = SCALES[scale]
        batches = list(loader)[: config["clips"] // config["batch"]]
        brain.fit_batch(batches[0])  # warm-up
        start = time.perf_counter()
        for batch in batches:
            brain.fit_batch(batch)
        synchronize()
        result = {
            "epoch_s": time.perf_counter() - start,
            "clips": len(batches) * config["batch"],
        }
        if not cached:
            # The frozen encoder's share of the online step.
            wavs, lengths = batches[0].sig
            with torch.no_grad():
                result["encoder_s"] = timed(
                    lambda: hparams["encoder"](wavs, lengths), steps
                )
        return result
    if name in ("qpmapper", "concat", "concat_padded"):
        brain, loader, hparams = load_brain(
            scale, work, cached=True, connector=name
        )
        batch = next(iter(loader))
        seconds = timed(lambda: brain.fit_batch(batch), steps)
        frames, lengths = batch.feats
        connector = hparams["qpmapper"]

        def connector_step():
            connector(frames.float(), lengths).sum().backward()

        return {
            "step_s": seconds,
            "connector_s": timed(connector_step, steps),
            "sequence_tokens": batch.input_ids[0].shape[1],
            "clips_per_s": SCALES[scale]["batch"] / seconds,
            "trainable": sum(
                p.numel() for p in brain.modules.parameters() if p.requires_grad
            ),
        }
    if name in ("bf16", "4bit"):
        # The GPU measurement of the issue: paper scale, batch 8.
        if name == "4bit":
            from transformers import BitsAndBytesConfig

            from speechbrain_emosllm.llm_loading import (
                check_quantization_support,
            )

            try:
                check_quantization_support(
                    BitsAndBytesConfig(load_in_4bit=True)
                )
            except RuntimeError as error:
                return {"skipped": str(error)}
        brain, loader, _ = load_brain(
            scale, work, cached=True, precision=name, batch=LOW_BATCH
        )
        batch = next(iter(loader))
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        seconds = timed(lambda: brain.fit_batch(batch), steps)
        result = {"step_s": seconds, "clips_per_s": LOW_BATCH / seconds}
        if torch.cuda.is_available():
            result["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
            result["device"] = torch.cuda.get_device_name()
        return result
    raise ValueError(name)


def run_in_subprocess(name, scale, work):
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--one",
            name,
            "--scale",
            scale,
            "--work",
            work,
        ],
        text=True,
        stdout=subprocess.PIPE,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    if result.returncode != 0:
        raise SystemExit(f"{name} at {scale} scale failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def report_float32(scale, work):
    """Prints the float32 ratios (targets 1-3 of the issue) at one scale."""
    config = SCALES[scale]
    if scale == "demo":
        step = run_in_subprocess("step_vs_bare", scale, work)
        print(
            f"recipe step {step['recipe_step_s']:.3f} s, bare "
            f"PyTorch+peft step {step['bare_step_s']:.3f} s -> ratio "
            f"{step['recipe_step_s'] / step['bare_step_s']:.2f} "
            f"(target <= 1.10); peak {step['peak_rss_gb']:.2f} GB"
        )
    cached = run_in_subprocess("epoch_cached", scale, work)
    online = run_in_subprocess("epoch_online", scale, work)
    batch = config["batch"]
    online_step = online["epoch_s"] / online["clips"]
    share = online["encoder_s"] / batch / online_step
    print(
        f"epoch of {cached['clips']} clips: cached "
        f"{cached['epoch_s']:.1f} s, online "
        f"{online['epoch_s']:.1f} s -> ratio "
        f"{cached['epoch_s'] / online['epoch_s']:.2f} (target <= "
        f"{1 - share + 0.05:.2f} = 1 - encoder share + 0.05); peak "
        f"{cached['peak_rss_gb']:.2f} / "
        f"{online['peak_rss_gb']:.2f} GB\n"
        "  per clip: frozen encoder "
        f"{online['encoder_s'] / batch:.3f} s, cached training step "
        f"{cached['epoch_s'] / cached['clips']:.3f} s -> the "
        "cache can at best save the encoder's share, "
        f"{share:.0%}"
        " of the online step"
    )
    results = {
        name: run_in_subprocess(name, scale, work)
        for name in ("qpmapper", "concat", "concat_padded")
    }
    titles = {
        "qpmapper": "QPMapper (32 queries)",
        "concat": "concat 10 Hz, mean clip length",
        "concat_padded": "concat 10 Hz, padded batch",
    }
    for name, result in results.items():
        print(
            f"{titles[name]:<32} {result['clips_per_s']:.3f} clips/s, "
            f"step {result['step_s']:.2f} s (connector fwd+bwd "
            f"{result['connector_s']:.3f} s), "
            f"{result['sequence_tokens']} tokens/sequence, "
            f"{result['trainable'] / 1e6:.1f}M trainable, peak "
            f"{result['peak_rss_gb']:.2f} GB"
        )
    # Least-squares line through the three runs: step - connector =
    # fixed + per_token * sequence tokens. A connector can only save
    # the per-token part.
    lengths = [results[n]["sequence_tokens"] for n in results]
    seconds = [
        results[n]["step_s"] - results[n]["connector_s"] for n in results
    ]
    mean_length = sum(lengths) / 3
    mean_seconds = sum(seconds) / 3
    per_token = sum(
        (x - mean_length) * (y - mean_seconds) for x, y in zip(lengths, seconds)
    ) / sum((x - mean_length) ** 2 for x in lengths)
    fixed = mean_seconds - per_token * mean_length
    print(
        f"LLM part of a step (step - connector), fitted: {fixed:.2f} s "
        f"per step + {per_token * 1000:.1f} ms per sequence token"
    )
    ours = results["qpmapper"]["clips_per_s"]

    def predicted(name):
        return fixed + per_token * results[name]["sequence_tokens"]

    for name, label in (("concat", "mean length"), ("concat_padded", "padded")):
        speedup = ours / results[name]["clips_per_s"]
        bound = predicted(name) / predicted("qpmapper")
        print(
            f"-> QPMapper speed-up over concat ({label}): {speedup:.2f}x; "
            f"token bound {bound:.2f}x; {speedup / bound:.2f} of the bound "
            "(target >= 0.9 at the paper's scale)"
        )


def report_low_precision(scale, work, precisions):
    """Prints clips/s and peak memory with a bf16 and a 4-bit LLM."""
    for precision in ("bf16", "4bit"):
        if precision not in precisions:
            continue
        result = run_in_subprocess(precision, scale, work)
        if "skipped" in result:
            print(f"{precision}: skipped: {result['skipped']}")
            continue
        memory = (
            f"peak GPU memory {result['peak_gpu_gb']:.1f} GB on "
            f"{result['device']}"
            if "peak_gpu_gb" in result
            else f"peak RSS {result['peak_rss_gb']:.2f} GB (CPU)"
        )
        print(
            f"{precision} LLM, QPMapper, batch {LOW_BATCH}: "
            f"{result['clips_per_s']:.2f} clips/s (step "
            f"{result['step_s']:.2f} s); {memory}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scale", default="both", choices=["demo", "paper", "both"]
    )
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--work", default=None, help="folder for models, clips and caches"
    )
    parser.add_argument(
        "--tokenizer",
        default=DEMO_TOKENIZER if os.path.isdir(DEMO_TOKENIZER) else None,
        help="tokenizer folder for the prompts (default: the demo's SmolLM2 "
        "tokenizer when the demo has been run, else a tiny offline one)",
    )
    parser.add_argument(
        "--precisions",
        default="float32,bf16,4bit" if torch.cuda.is_available() else "float32",
        help="comma-separated: float32 (the ratios above), bf16 and 4bit "
        f"(clips/s and peak memory at batch {LOW_BATCH}; 4bit needs CUDA)",
    )
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    if args.one:
        result = measure(args.one, args.scale, args.work)
        result["peak_rss_gb"] = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        )
        print(json.dumps(result))
        return
    scales = ["demo", "paper"] if args.scale == "both" else [args.scale]
    print(
        f"CPU threads: {torch.get_num_threads()}; random weights; "
        "float32; cached frames unless stated; prompt tokenizer: "
        f"{args.tokenizer or 'tiny offline BPE (2000 tokens)'}"
    )
    for scale in scales:
        if args.work:
            work = os.path.join(args.work, scale)
            os.makedirs(work, exist_ok=True)
        else:
            work = tempfile.mkdtemp(prefix=f"bench_{scale}_")
        config = SCALES[scale]
        # The bf16 / 4-bit measurements need a batch of LOW_BATCH clips.
        low_precision = {"bf16", "4bit"} & set(precisions)
        count = max(config["clips"], LOW_BATCH if low_precision else 0)
        write_clips(work, count, config["classes"])
        models = save_random_models(scale, os.path.join(work, "models"))
        install_tokenizer(models["llm"], args.tokenizer)
        print(
            f"\n== {scale} scale: {config['encoder']} + {config['llm']}, "
            f"batch {config['batch']}, 5-10 s clips, {config['classes']} "
            "classes, phase-3 joint prompts"
        )
        if "float32" in precisions:
            report_float32(scale, work)
        report_low_precision(scale, work, precisions)


if __name__ == "__main__":
    main()
