"""A frozen causal LLM, optionally adapted with PEFT LoRA, that hears audio.

The LLM is loaded directly through ``transformers.AutoModelForCausalLM``
rather than SpeechBrain's ``LLaMA`` lobe: that lobe adds a pad token and
resizes the vocabulary, which would make our LoRA adapters unusable on the
untouched base model that ``peft.PeftModel.from_pretrained`` expects.

Every batch operation here is vectorised: audio embeddings are spliced into
the text embeddings by index arithmetic, the loss is computed on the answer
tokens only (the LM head runs on those positions alone, which matters with
Llama 3's 128k vocabulary), and label scoring reuses the prompt's KV cache.

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

from speechbrain_emosllm.prompts import EMOTION, IGNORE


def to_left_padding(ids, lengths, pad_value):
    """Moves right-padded rows to the right edge (left padding).

    Arguments
    ---------
    ids : torch.Tensor
        (batch, time) right-padded values.
    lengths : torch.Tensor
        Absolute lengths of the rows.
    pad_value : int
        Value written in the padding.

    Returns
    -------
    torch.Tensor
        The same rows, left-padded.

    Example
    -------
    >>> to_left_padding(torch.tensor([[1, 2, 3], [4, 0, 0]]),
    ...                 torch.tensor([3, 1]), 0)
    tensor([[1, 2, 3],
            [0, 0, 4]])
    """
    time = ids.shape[1]
    source = torch.arange(time, device=ids.device)[None] - (
        time - lengths[:, None]
    )
    shifted = ids.gather(1, source.clamp(min=0))
    return shifted.masked_fill(source < 0, pad_value)


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


def relative_to_absolute(relative, max_len):
    """Converts SpeechBrain relative lengths to integer lengths.

    Arguments
    ---------
    relative : torch.Tensor
        Relative lengths in [0, 1].
    max_len : int
        Padded length of the batch.

    Returns
    -------
    torch.Tensor
        Integer lengths.

    Example
    -------
    >>> relative_to_absolute(torch.tensor([1.0, 0.5]), 4)
    tensor([4, 2])
    """
    return torch.round(relative * max_len).long()


def check_quantization_support(quantization_config):
    """Fails early, with a clear message, where 4/8-bit loading cannot work.

    Arguments
    ---------
    quantization_config : transformers.BitsAndBytesConfig
        The requested quantisation.

    Example
    -------
    >>> from transformers import BitsAndBytesConfig
    >>> if not torch.cuda.is_available():
    ...     try:
    ...         check_quantization_support(
    ...             BitsAndBytesConfig(load_in_4bit=True))
    ...     except RuntimeError as error:
    ...         print(str(error)[:40])
    4/8-bit LLM loading (bitsandbytes) needs
    """
    if not torch.cuda.is_available():
        raise RuntimeError(
            "4/8-bit LLM loading (bitsandbytes) needs a CUDA GPU, and none "
            "is available: set quantization_config to null (and maybe "
            "llm_dtype: bfloat16) on this machine."
        )
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError(
            "4/8-bit LLM loading needs the bitsandbytes package: "
            "pip install bitsandbytes"
        )


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

    def _decode(self, embeddings, attention_mask, **kwargs):
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
        hidden = self._decode(embeddings, attention_mask).last_hidden_state

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

    def _left_padded_prefix(
        self, audio_embeddings, prefix_ids, lengths, audio_start, pad_id
    ):
        shift = prefix_ids.shape[1] - lengths
        ids = to_left_padding(prefix_ids, lengths, pad_id)
        embeddings = self.embed_with_audio(
            ids, audio_start + shift, audio_embeddings
        )
        positions = torch.arange(ids.shape[1], device=ids.device)
        attention_mask = (positions[None] >= shift[:, None]).long()
        position_ids = (positions[None] - shift[:, None]).clamp(min=0)
        return embeddings, attention_mask, position_ids

    @torch.no_grad()
    def score_labels(
        self, audio_embeddings, prefix_ids, lengths, audio_start, label_ids
    ):
        """Log-likelihood of every label continuation after each prefix.

        The prefixes go through the LLM once; the KV cache is then repeated
        for the labels, which are scored together in one more pass.

        Arguments
        ---------
        audio_embeddings : torch.Tensor
            (batch, n_queries, hidden).
        prefix_ids : torch.Tensor
            (batch, time) right-padded prefixes.
        lengths : torch.Tensor
            (batch,) absolute prefix lengths.
        audio_start : torch.Tensor
            (batch,) first audio slot of each prefix.
        label_ids : list of list of int
            Token ids of each label continuation.

        Returns
        -------
        torch.Tensor
            (batch, n_labels) summed log-probabilities.
        """
        device = prefix_ids.device
        batch, n_labels = prefix_ids.shape[0], len(label_ids)
        embeddings, attention_mask, position_ids = self._left_padded_prefix(
            audio_embeddings, prefix_ids, lengths, audio_start, 0
        )
        out = self._decode(
            embeddings,
            attention_mask,
            position_ids=position_ids,
            use_cache=True,
        )
        head = self.hf_model.get_output_embeddings()
        first_logp = head(out.last_hidden_state[:, -1]).float().log_softmax(-1)

        label_lengths = torch.tensor(
            [len(ids) for ids in label_ids], device=device
        )
        labels = torch.zeros(
            n_labels, int(label_lengths.max()), dtype=torch.long, device=device
        )
        for k, ids in enumerate(label_ids):
            labels[k, : len(ids)] = torch.tensor(ids, device=device)
        scores = first_logp[:, labels[:, 0]]
        if labels.shape[1] == 1:
            return scores

        cache = out.past_key_values
        cache.batch_repeat_interleave(n_labels)
        inputs = labels[:, :-1].repeat(batch, 1)
        steps = torch.arange(inputs.shape[1], device=device)
        continuation_mask = steps[None] < (label_lengths - 1)[:, None]
        continuation_mask = continuation_mask.repeat(batch, 1).long()
        mask = torch.cat(
            [attention_mask.repeat_interleave(n_labels, 0), continuation_mask],
            dim=1,
        )
        last_position = position_ids[:, -1:].repeat_interleave(n_labels, 0)
        out = self._decode(
            self.hf_model.get_input_embeddings()(inputs),
            mask,
            position_ids=last_position + 1 + steps[None],
            past_key_values=cache,
            use_cache=True,
        )
        logp = head(out.last_hidden_state).float().log_softmax(-1)
        targets = labels[:, 1:].repeat(batch, 1)
        token_logp = logp.gather(-1, targets[..., None]).squeeze(-1)
        token_logp = token_logp * continuation_mask
        return scores + token_logp.sum(-1).view(batch, n_labels)

    @torch.no_grad()
    def generate(
        self,
        audio_embeddings,
        prefix_ids,
        lengths,
        audio_start,
        max_new_tokens,
        stop_ids,
    ):
        """Greedy continuation of each prefix.

        Arguments
        ---------
        audio_embeddings : torch.Tensor
            (batch, n_queries, hidden).
        prefix_ids : torch.Tensor
            (batch, time) right-padded prefixes.
        lengths : torch.Tensor
            (batch,) absolute prefix lengths.
        audio_start : torch.Tensor
            (batch,) first audio slot of each prefix.
        max_new_tokens : int
            Longest continuation.
        stop_ids : list of int
            Tokens that end a continuation (end of turn).

        Returns
        -------
        list of list of int
            Generated ids per row, stop token excluded.
        """
        pad_id = self.tokenizer.pad_token_id
        pad_id = stop_ids[0] if pad_id is None else pad_id
        embeddings, attention_mask, _ = self._left_padded_prefix(
            audio_embeddings, prefix_ids, lengths, audio_start, pad_id
        )
        generated = self.model.generate(
            inputs_embeds=embeddings,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=list(stop_ids),
            pad_token_id=pad_id,
        )
        outputs = []
        for row in generated.tolist():
            ends = [i for i, token in enumerate(row) if token in stop_ids]
            outputs.append(row[: ends[0]] if ends else row)
        return outputs

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
