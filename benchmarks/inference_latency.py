"""Inference latency per mode, and label scoring vs free generation.

    python benchmarks/inference_latency.py [--llm smollm2-135m-instruct]
        [--llm-source FOLDER] [--repeats 5]
    python benchmarks/inference_latency.py --model EXPORTED_FOLDER

With ``--model`` (an exported model, e.g. the demo's P3 through
``python -m speechbrain_emosllm.export``) it times ``classify_file`` on a
3-s, a 10-s and a 30-s clip in one run, as ratios to the 30-s clip.
Otherwise:

Builds the LLM of a preset from its config with random weights (no
download), or loads ``--llm-source``; audio embeddings are random (the
encoder and QPMapper costs are the same for every mode and are timed
separately). Prints, per mode, the latency per utterance (batch 1), then
the ratio of label scoring (one pass over the prompt, one batched pass
over the label continuations reusing its KV cache) to the free generation
of the joint answer it replaces, and to scoring without the KV cache;
then, for a batch of ``--batch`` clips with the fixed ``ser_only`` prompt,
the scoring time per clip with the prompt start that every row shares run
once, as a ratio to running it in every row.
"""

import argparse
import statistics
import tempfile
import time

import ruamel.yaml
import torch

from speechbrain_emosllm import (
    PromptBuilder,
    QPMapper,
    SpeechLLM,
    answer_scoring,
)
from speechbrain_emosllm.decoding import EmotionDecoder
from speechbrain_emosllm.hparams import preset_path
from speechbrain_emosllm.labels import emotion_labels
from speechbrain_emosllm.modes import EMOTION_MODES

TRANSCRIPT = "so i told him that we would meet again next week at the office"


def build_llm(preset, source):
    if source:
        return SpeechLLM(source)
    from transformers import AutoConfig, AutoModelForCausalLM

    from speechbrain_emosllm.testing import make_tiny_tokenizer

    config = dict(
        ruamel.yaml.YAML().load(open(preset_path("llm_preset", preset)))[
            "llm_config"
        ]
    )
    model_type = config.pop("model_type")
    folder = tempfile.mkdtemp()
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(
        AutoConfig.for_model(model_type, **config)
    ).save_pretrained(folder)
    # A small ChatML tokenizer: ids stay below the preset's vocabulary.
    make_tiny_tokenizer(2000).save_pretrained(folder)
    return SpeechLLM(folder)


def timed(function, repeats):
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # first call warms up


def naive_scores(llm, builder, audio, prefix):
    """Scores labels with one full forward pass per label (no KV cache)."""
    scores = []
    for label in builder.label_ids:
        ids = torch.tensor([prefix["input_ids"] + label])
        embeds = llm.embed_with_audio(
            ids, torch.tensor([prefix["audio_start"]]), audio
        )
        logp = llm.model(inputs_embeds=embeds).logits[0].log_softmax(-1)
        n = len(prefix["input_ids"])
        scores.append(sum(logp[n - 1 + j, t] for j, t in enumerate(label)))
    return torch.stack(scores)


def shared_start_ratio(decoder, audio, batch, repeats):
    """Batched ``ser_only`` scoring: shared prompt start once vs per row."""
    prefixes = [decoder.builder.inference_prefix("ser_only")] * batch
    audio = audio.expand(batch, -1, -1)
    shared = timed(lambda: decoder.score(audio, prefixes), repeats)
    # The same pass with no start shared: every row runs its whole prompt.
    sharing = answer_scoring.shared_prefix_length
    answer_scoring.shared_prefix_length = lambda *args: 0
    try:
        per_row = timed(lambda: decoder.score(audio, prefixes), repeats)
    finally:
        answer_scoring.shared_prefix_length = sharing
    start = prefixes[0]["audio_start"]
    print(
        f"\nser_only scoring, batch {batch} ({start} of "
        f"{len(prefixes[0]['input_ids'])} prompt tokens shared):"
    )
    print(f"shared start once:           {1000 * shared / batch:8.1f} ms/clip")
    print(
        f"whole prompt in every row:    {1000 * per_row / batch:8.1f} ms/clip"
    )
    print(f"ratio shared / per row:      {shared / per_row:8.2f}")


def clip_latency(model_folder, repeats, mode="ser_only"):
    """``classify_file`` latency of 3-, 10- and 30-s clips, one run."""
    import os

    import soundfile

    from speechbrain_emosllm.inference import EmotionLLM

    folder = tempfile.mkdtemp()
    model = EmotionLLM.from_hparams(
        source=model_folder, savedir=os.path.join(folder, "model")
    )
    generator = torch.Generator().manual_seed(0)
    latency = {}
    for seconds in (3, 10, 30):
        path = os.path.join(folder, f"{seconds}s.wav")
        wav = 0.1 * torch.randn(seconds * 16000, generator=generator)
        soundfile.write(path, wav.numpy(), 16000)
        latency[seconds] = timed(
            lambda p=path: model.classify_file(p, mode=mode), repeats
        )
    print(
        f"model: {model_folder}, mode {mode}, batch 1, CPU threads "
        f"{torch.get_num_threads()}"
    )
    print(f"{'clip':<8}{'ms':>10}{'ratio to 30 s':>16}")
    for seconds, value in latency.items():
        print(
            f"{seconds:>3} s   {1000 * value:>10.1f}"
            f"{value / latency[30]:>16.2f}"
        )


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm", default="smollm2-135m-instruct")
    parser.add_argument("--llm-source", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-classes", type=int, default=8)
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    if args.model:
        return clip_latency(args.model, args.repeats)
    torch.set_grad_enabled(False)
    llm = build_llm(args.llm, args.llm_source).eval()
    labels = emotion_labels(args.n_classes)
    builder = PromptBuilder(llm.tokenizer, labels, 32)
    decoder = EmotionDecoder(llm, builder, max_new_tokens=40)
    mapper = QPMapper(1024, llm.hidden_size).eval()
    frames = torch.randn(1, 250, 1024)  # 5 s of WavLM Large frames
    audio = mapper(frames)
    print(
        f"LLM: {args.llm_source or args.llm} "
        f"({sum(p.numel() for p in llm.parameters()) / 1e6:.0f}M), "
        f"{len(labels)} labels, batch 1, CPU threads "
        f"{torch.get_num_threads()}"
    )
    mapper_s = timed(lambda: mapper(frames), args.repeats)
    print(f"QPMapper (5 s clip): {1000 * mapper_s:.1f} ms")
    print(f"\n{'mode':<18}{'ms / utterance':>16}")
    for mode in EMOTION_MODES:
        seconds = timed(
            lambda m=mode: decoder.run_mode(audio, m, [TRANSCRIPT]),
            args.repeats,
        )
        print(f"{mode:<18}{1000 * seconds:>16.1f}")

    prefix = builder.inference_prefix("joint_oracle", TRANSCRIPT)
    answer_start = builder.inference_prefix("joint_generated")
    answer_tokens = (
        len(builder.encode(f"| ASR: {TRANSCRIPT} | Emotion: Neutral")) + 1
    )
    scoring = timed(lambda: decoder.score(audio, [prefix]), args.repeats)
    decoder.max_new_tokens = answer_tokens
    # Random weights rarely stop early: this generates the answer's length.
    generation = timed(
        lambda: decoder.generate(audio, [answer_start]), args.repeats
    )
    naive = timed(
        lambda: naive_scores(llm, builder, audio, prefix), args.repeats
    )
    print(f"\nlabel scoring with KV cache:     {1000 * scoring:8.1f} ms")
    print(
        f"free generation of the answer:   {1000 * generation:8.1f} ms "
        f"({answer_tokens} tokens)"
    )
    print(f"label scoring without KV cache:  {1000 * naive:8.1f} ms")
    print(f"ratio scoring / generation:      {scoring / generation:8.2f}")
    print(f"ratio scoring / uncached scoring:{scoring / naive:8.2f}")
    shared_start_ratio(decoder, audio, args.batch, args.repeats)


if __name__ == "__main__":
    main()
