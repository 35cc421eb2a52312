"""Scale features: DDP, resume after SIGKILL, bf16, 4-bit, dynamic batches."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from peft import LoraConfig

from conftest import RECIPE, recipe_overrides, train
from speechbrain_emosllm import SpeechLLM
from speechbrain_emosllm.llm_loading import check_quantization_support

SMALL = dict(qpmapper_dim=32, qpmapper_ffn=32, qpmapper_heads=4)


def epoch_losses(output, phase="p1_asr"):
    log = open(os.path.join(output, phase, "train_log.txt")).read()
    return [
        (float(a), float(b))
        for a, b in re.findall(
            r"train loss: ([\d.]+) - valid loss: ([\d.]+)", log
        )
    ]


def best_qpmapper(output):
    from speechbrain_emosllm.checkpoints import find_best_checkpoint

    checkpoint = find_best_checkpoint(os.path.join(output, "p1_asr"))
    state = torch.load(checkpoint.paramfiles["qpmapper"])
    return torch.cat([value.flatten().float() for value in state.values()])


def test_ddp_two_processes_match_one_process(
    tiny_models, tiny_corpus, tmp_path
):
    """2 processes x batch 2 (gloo) against 1 process x batch 4, same
    order (--sorting=ascending: SpeechBrain's DistributedSampler shuffles
    otherwise), no dropout, fixed prompts, plain SGD, loss normalised by
    the global batch's token count. Stated tolerance: the trained QPMapper
    weights differ by less than 2% of how far a different global batch
    (1 x 2) moves them (measured: 0.00000 against 0.038)."""
    runs = {
        "single": (4, [sys.executable]),
        "ddp": (
            2,
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node=2",
                "--master_port=29517",
            ],
        ),
        "other_batch": (2, [sys.executable]),
    }
    weights = {}
    for name, (per_process, launcher) in runs.items():
        output = str(tmp_path / name)
        overrides = recipe_overrides(
            tiny_models,
            tiny_corpus,
            output,
            batch_size=per_process,
            sorting="ascending",
            qpmapper_dropout=0.0,
            random_train_prompts=False,
            number_of_epochs=2,
            **SMALL,
        )
        env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
        result = subprocess.run(
            [
                *launcher,
                "train.py",
                "hparams/p1_asr.yaml",
                *overrides,
                "--distributed_backend=gloo",
                # Plain SGD: Adam would amplify float noise in tiny grads.
                "--opt_class=!name:torch.optim.SGD",
            ],
            cwd=RECIPE,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout[-3000:]
        assert len(epoch_losses(output)) == 2
        weights[name] = best_qpmapper(output)
    ddp_gap = (weights["ddp"] - weights["single"]).norm()
    batch_gap = (weights["other_batch"] - weights["single"]).norm()
    assert batch_gap > 0
    assert ddp_gap < 0.02 * batch_gap, (ddp_gap, batch_gap)


# Two gloo processes save three checkpoints into one folder, each better
# than the last, with the main process renaming late (as on a slow disk).
CHECKPOINTS_IN_DDP = """
import sys, time, torch, torch.distributed as dist
from speechbrain_emosllm import checkpoints
dist.init_process_group("gloo")
if dist.get_rank() == 0:
    rename = checkpoints.os.replace
    def late_rename(*args):
        time.sleep(0.5)
        rename(*args)
    checkpoints.os.replace = late_rename
ckpt = checkpoints.AtomicCheckpointer(sys.argv[1], {"w": torch.nn.Linear(2, 2)})
for error in (3.0, 2.0, 1.0):
    ckpt.save_and_keep_only(meta={"e": error}, min_keys=["e"], verbosity=0)
print("kept", sorted(c.meta["e"] for c in ckpt.list_checkpoints()))
dist.destroy_process_group()
"""


def test_ddp_processes_agree_on_which_checkpoints_to_delete(tmp_path):
    """Every process must list the new checkpoint before deciding what to
    delete: a process that looked before the main one renamed it into
    place deleted nothing, skipped the main process's broadcasts and
    deadlocked the run (seen in CI as a hang or an abort at exit)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CHECKPOINTS_IN_DDP, str(tmp_path)],
            env=dict(
                os.environ,
                RANK=str(rank),
                WORLD_SIZE="2",
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            ),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in range(2)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=60)[0])
    except subprocess.TimeoutExpired:
        pytest.fail("the processes deadlocked while deleting checkpoints")
    finally:
        for process in processes:
            process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-2000:]
        assert "kept [1.0]" in output, output[-2000:]


def test_a_killed_run_resumes_mid_epoch(tiny_models, tiny_corpus, tmp_path):
    output = str(tmp_path / "resume")
    overrides = recipe_overrides(
        tiny_models,
        tiny_corpus,
        output,
        batch_size=1,
        number_of_epochs=1,
        ckpt_interval_minutes=0,
        ckpt_interval_steps=4,
        **SMALL,
    )
    command = [sys.executable, "train.py", "hparams/p1_asr.yaml", *overrides]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    save = os.path.join(output, "p1_asr", "save")
    process = subprocess.Popen(
        command,
        cwd=RECIPE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    # Kill as soon as an intra-epoch checkpoint appears: checkpoints are
    # renamed into place only once complete (AtomicCheckpointer).
    while time.time() < deadline and process.poll() is None:
        if os.path.isdir(save) and any(
            name.startswith("CKPT") for name in os.listdir(save)
        ):
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (
        not os.path.isfile(os.path.join(output, "p1_asr", "train_log.txt"))
        or "epoch: 1"
        not in open(os.path.join(output, "p1_asr", "train_log.txt")).read()
    )

    result = subprocess.run(
        command,
        cwd=RECIPE,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Loading a checkpoint from" in result.stdout
    assert (
        "intra-epoch" in result.stdout
        or "brain_intra_epoch_ckpt" in result.stdout
        or _resumed_steps(result.stdout) < 16
    )
    assert len(epoch_losses(output)) == 1


def _resumed_steps(log):
    """Number of training steps the progress bar reached in a log."""
    found = re.findall(r"(\d+)/16 \[", log)
    return (
        max(int(n) for n in found) - min(int(n) for n in found) + 1
        if found
        else 16
    )


def test_bfloat16_backbone_keeps_lora_in_float32(tiny_models):
    torch.manual_seed(0)
    llm = SpeechLLM(
        tiny_models["llm"],
        dtype="bfloat16",
        lora_config=LoraConfig(r=4, target_modules=["q_proj"]),
    )
    trainable = [p for p in llm.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    frozen = llm.hf_model.get_input_embeddings().weight
    assert frozen.dtype == torch.bfloat16
    ids = torch.randint(3, 300, (2, 20))
    spans = torch.full_like(ids, -1)
    spans[:, 15:] = 1
    audio = torch.randn(2, 3, llm.hidden_size, requires_grad=True)
    loss = llm(
        audio,
        ids,
        torch.tensor([20, 18]),
        torch.tensor([2, 2]),
        spans,
        torch.ones(3),
    )["loss"]
    loss.backward()
    assert torch.isfinite(loss) and audio.grad.abs().sum() > 0
    assert all(p.grad is not None for p in trainable)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only check")
def test_quantization_without_cuda_is_a_clear_error(tiny_models):
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(load_in_4bit=True)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        check_quantization_support(config)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        SpeechLLM(tiny_models["llm"], quantization_config=config)


def test_dynamic_batching_trains(tiny_models, tiny_corpus, tmp_path):
    output = str(tmp_path / "dynamic")
    overrides = recipe_overrides(
        tiny_models,
        tiny_corpus,
        output,
        dynamic_batching=True,
        dynamic_batch_sampler="{max_batch_length: 2.0, num_buckets: 2}",
        **SMALL,
    )
    result = train("p1_asr", overrides)
    assert result.returncode == 0, result.stdout[-3000:]
    assert len(epoch_losses(output)) == 1
