"""A frozen causal LLM, optionally adapted with PEFT LoRA, that hears audio.

The LLM is loaded directly through ``transformers.AutoModelForCausalLM``
rather than SpeechBrain's ``LLaMA`` lobe: that lobe adds a pad token and
resizes the vocabulary, which would make our LoRA adapters unusable on the
untouched base model that ``peft.PeftModel.from_pretrained`` expects.

Every batch operation here is vectorised: audio embeddings are spliced into
the text embeddings by index arithmetic, and the loss is computed on the
answer tokens only (the LM head runs on those positions alone, which matters
with Llama 3's 128k vocabulary). Reading answers (KV-cached label scoring,
generation) is ``answer_scoring``'s job.

Authors
 * speechbrain-emosllm contributors 2026
"""

import torch
import torch.nn.functional as F
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    mark_as_transfer,
    register_checkpoint_hooks,
)
from torch import nn

from speechbrain_emosllm.llm_loading import check_quantization_support
from speechbrain_emosllm.prompts import EMOTION, IGNORE


def world_size():
    """Number of processes of the torch.distributed job (1 without one).

    Returns
    -------
    int

    Example
    -------
    >>> world_size()
    1
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


@register_checkpoint_hooks
class SpeechLLM(nn.Module):
    """A causal LLM that reads audio embeddings spliced into its prompt.

    Arguments
    ---------
    source : str
        Hub id or local folder of a chat LLM (Llama architecture).
    lora_config : peft.LoraConfig, optional
        LoRA adapters to add; the LLM stays entirely frozen when None.
    adapter : str, optional
        Folder of a trained LoRA adapter in PEFT's format, loaded with
        ``peft.PeftModel.from_pretrained`` (inference; replaces
        ``lora_config``).
    dtype : str
        Dtype of the frozen weights (``"float32"``, ``"bfloat16"``...).
        LoRA weights stay in float32.
    gradient_checkpointing : bool
        Recompute LLM activations in the backward pass to save memory.
    quantization_config : transformers.BitsAndBytesConfig, optional
        Load the frozen LLM in 4 or 8 bits (QLoRA); needs CUDA and the
        ``bitsandbytes`` package.
    cache_dir : str, optional
        Where Hub downloads are cached.
    **from_pretrained_kwargs
        Passed to ``AutoModelForCausalLM.from_pretrained``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_emosllm.testing import make_tiny_llm
    >>> llm = SpeechLLM(make_tiny_llm(tempfile.mkdtemp()))
    >>> llm.hidden_size, llm.count_trainable()
    (64, 0)
    """

    def __init__(
        self,
        source,
        lora_config=None,
        adapter=None,
        dtype="float32",
        gradient_checkpointing=False,
        quantization_config=None,
        cache_dir=None,
        **from_pretrained_kwargs,
    ):
        super().__init__()
        if quantization_config is not None:
            check_quantization_support(quantization_config)
            from_pretrained_kwargs["quantization_config"] = quantization_config
            from_pretrained_kwargs.setdefault("device_map", {"": 0})
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.source = source
        self.tokenizer = AutoTokenizer.from_pretrained(
            source, cache_dir=cache_dir
        )
        model = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=getattr(torch, dtype),
            cache_dir=cache_dir,
            **from_pretrained_kwargs,
        )
        model.requires_grad_(False)
        if quantization_config is not None:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=gradient_checkpointing
            )
        elif gradient_checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        elif lora_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, lora_config)
        self.model = model
        self.uses_lora = adapter is not None or lora_config is not None

    @property
    def hf_model(self):
        """The transformers model under the PEFT wrapper, if any."""
        if self.uses_lora:
            return self.model.get_base_model()
        return self.model

    @property
    def hidden_size(self):
        """Width of the LLM's token embeddings."""
        return self.hf_model.config.hidden_size

    def count_trainable(self):
        """Number of trainable parameters (the LoRA weights)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def embed_with_audio(self, input_ids, audio_start, audio_embeddings):
        """Embeds tokens and writes the audio embeddings into their slots.

        Arguments
        ---------
        input_ids : torch.Tensor
            (batch, time) token ids with placeholders in the audio slots.
        audio_start : torch.Tensor
            (batch,) index of each row's first audio slot.
        audio_embeddings : torch.Tensor
            (batch, n_queries, hidden) audio embeddings.

        Returns
        -------
        torch.Tensor
            (batch, time, hidden) input embeddings.
        """
        text = self.hf_model.get_input_embeddings()(input_ids)
        n_queries = audio_embeddings.shape[1]
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        offset = positions[None] - audio_start[:, None]
        is_audio = (offset >= 0) & (offset < n_queries)
        index = offset.clamp(0, n_queries - 1)[..., None]
        audio = audio_embeddings.to(text.dtype).gather(
            1, index.expand(-1, -1, text.shape[-1])
        )
        return torch.where(is_audio[..., None], audio, text)

    def decode_embeddings(self, embeddings, attention_mask, **kwargs):
        """Runs the decoder stack (no LM head) on input embeddings."""
        decoder = self.hf_model.get_decoder()
        return decoder(
            inputs_embeds=embeddings, attention_mask=attention_mask, **kwargs
        )

    def forward(self, *args, **kwargs):
        """Same as ``answer_loss``: the training entry point.

        Going through ``forward`` lets DistributedDataParallel, which wraps
        this module when it has trainable (LoRA) weights, synchronise the
        gradients.
        """
        return self.answer_loss(*args, **kwargs)

    def answer_loss(
        self,
        audio_embeddings,
        input_ids,
        lengths,
        audio_start,
        span_ids,
        span_weights,
        emotion_weights=None,
        sync_token_count=False,
    ):
        """Weighted next-token cross-entropy on the answer tokens.

        Arguments
        ---------
        audio_embeddings : torch.Tensor
            (batch, n_queries, hidden) output of the mapper.
        input_ids : torch.Tensor
            (batch, time) right-padded full sequences.
        lengths : torch.Tensor
            (batch,) absolute lengths.
        audio_start : torch.Tensor
            (batch,) first audio slot.
        span_ids : torch.Tensor
            (batch, time) span type per token (IGNORE where no loss).
        span_weights : torch.Tensor
            Weights of the (markup, transcript, emotion) spans.
        emotion_weights : torch.Tensor, optional
            (batch,) extra weight of each row's emotion tokens (class
            weights for imbalanced data).
        sync_token_count : bool
            Under torch.distributed, divide by the (weighted) token count of
            the global batch rather than this process's (training with DDP;
            every process must call it).

        Returns
        -------
        dict
            ``loss`` (the weighted mean) and the unweighted mean
            cross-entropy of the ``transcript`` and ``emotion`` spans.

        Example
        -------
        >>> import tempfile, random
        >>> from speechbrain_emosllm.testing import make_tiny_llm
        >>> from speechbrain_emosllm.prompts import PromptBuilder
        >>> llm = SpeechLLM(make_tiny_llm(tempfile.mkdtemp()))
        >>> builder = PromptBuilder(llm.tokenizer, ["Happy", "Sad"], 2)
        >>> ex = builder.training_example("joint", "hi", "Sad",
        ...                               random.Random(0))
        >>> out = llm.answer_loss(
        ...     torch.zeros(1, 2, 64), torch.tensor([ex["input_ids"]]),
        ...     torch.tensor([len(ex["input_ids"])]),
        ...     torch.tensor([ex["audio_start"]]),
        ...     torch.tensor([ex["span_ids"]]), torch.ones(3))
        >>> out["loss"].item() > 0
        True
        """
        embeddings = self.embed_with_audio(
            input_ids, audio_start, audio_embeddings
        )
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        attention_mask = (positions[None] < lengths[:, None]).long()
        out = self.decode_embeddings(embeddings, attention_mask)
        hidden = out.last_hidden_state

        # Position t predicts token t + 1: keep the answer positions only.
        spans = span_ids[:, 1:]
        selected = spans != IGNORE
        targets = input_ids[:, 1:][selected]
        head = self.hf_model.get_output_embeddings()
        logits = head(hidden[:, :-1][selected])
        token_ce = F.cross_entropy(logits.float(), targets, reduction="none")

        span_weights = span_weights.to(token_ce)
        weights = span_weights[spans.clamp(min=0)]
        if emotion_weights is not None:
            row_weights = emotion_weights.to(weights)[:, None]
            weights = torch.where(
                spans == EMOTION, weights * row_weights, weights
            )
        weights = weights[selected]
        selected_spans = spans[selected]
        normalizer = weights.sum()
        if sync_token_count and world_size() > 1:
            # Normalise by the tokens of the whole global batch, so that
            # averaging gradients over processes (DDP) gives exactly the
            # single-process gradient of the same global batch.
            normalizer = normalizer.detach().clone()
            torch.distributed.all_reduce(normalizer)
            normalizer = normalizer / world_size()
        stats = {"loss": (token_ce * weights).sum() / normalizer}
        for name, span in (("transcript", 1), ("emotion", EMOTION)):
            in_span = (selected_spans == span).to(token_ce)
            stats[name] = (token_ce * in_span).sum() / in_span.sum().clamp(
                min=1
            )
        return stats

    def trainable_state_dict(self):
        """The LoRA weights (PEFT naming), or {} without LoRA."""
        if not self.uses_lora:
            return {}
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(self.model)

    @mark_as_saver
    def _save(self, path):
        # Only the adapters are saved: the frozen LLM comes from `source`.
        torch.save(self.trainable_state_dict(), path)

    @mark_as_transfer
    @mark_as_loader
    def _load(self, path, end_of_epoch=False):
        del end_of_epoch
        state = torch.load(path, map_location="cpu")
        if not state:
            return
        if not self.uses_lora:
            raise ValueError(
                f"{path} holds LoRA weights but this model has no LoRA "
                "(lora_config is null)."
            )
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.model, state)
        if result.unexpected_keys:
            raise ValueError(
                f"{path} does not match the LoRA configuration: unexpected "
                f"keys {result.unexpected_keys[:3]}..."
            )
