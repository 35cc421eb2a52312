"""Reading the speech LLM's answers: label scoring and generation.

Label scoring runs the prompt once and reuses its KV cache for every label
continuation (all labels side by side in one more pass); generation is
greedy. Both take right-padded prefixes and move them to the right edge
(left padding), as decoder-only models need. Label scoring also runs the
tokens that every prompt of the batch starts with (the system turn and the
instruction before the audio: over half of a fixed SER prompt) once for
the whole batch.

Authors
 * speechbrain-emosllm contributors 2026
"""

import torch

from speechbrain_emosllm.padding import to_left_padding


def left_padded_prefix(
    speech_llm, audio_embeddings, prefix_ids, lengths, audio_start, pad_id
):
    """Prefixes moved to the right edge, with their audio, mask, positions.

    Arguments
    ---------
    speech_llm : SpeechLLM
        The model (for its embeddings).
    audio_embeddings : torch.Tensor
        (batch, n_queries, hidden).
    prefix_ids : torch.Tensor
        (batch, time) right-padded prefixes.
    lengths : torch.Tensor
        (batch,) absolute prefix lengths.
    audio_start : torch.Tensor
        (batch,) first audio slot of each prefix.
    pad_id : int
        Token written in the padding.

    Returns
    -------
    (torch.Tensor, torch.Tensor, torch.Tensor)
        Input embeddings, attention mask and position ids.
    """
    shift = prefix_ids.shape[1] - lengths
    ids = to_left_padding(prefix_ids, lengths, pad_id)
    embeddings = speech_llm.embed_with_audio(
        ids, audio_start + shift, audio_embeddings
    )
    positions = torch.arange(ids.shape[1], device=ids.device)
    attention_mask = (positions[None] >= shift[:, None]).long()
    position_ids = (positions[None] - shift[:, None]).clamp(min=0)
    return embeddings, attention_mask, position_ids


def shared_prefix_length(prefix_ids, audio_start):
    """How many tokens every row starts with, up to its first audio slot.

    A batch of one row shares its start with nobody: 0 (splitting it off
    would only add a decoder pass).

    Arguments
    ---------
    prefix_ids : torch.Tensor
        (batch, time) right-padded prefixes.
    audio_start : torch.Tensor
        (batch,) first audio slot of each prefix.

    Returns
    -------
    int

    Example
    -------
    >>> ids = torch.tensor([[5, 6, 7, 0, 9], [5, 6, 8, 0, 9]])
    >>> shared_prefix_length(ids, torch.tensor([3, 3]))
    2
    >>> shared_prefix_length(ids, torch.tensor([1, 3]))
    1
    >>> shared_prefix_length(ids[:1], torch.tensor([3]))
    0
    """
    if len(prefix_ids) < 2:
        return 0
    limit = int(audio_start.min())
    same = (prefix_ids[:, :limit] == prefix_ids[:1, :limit]).all(0)
    differing = (~same).nonzero()
    return int(differing[0]) if len(differing) else limit


def encode_prefixes(speech_llm, audio_embeddings, prefix_ids, lengths, starts):
    """The prefixes through the LLM, their shared start computed once.

    The tokens that every row of a batch of two or more starts with go
    through the decoder as one row, whose KV cache is repeated for the
    batch; the rest of each row (its audio and what follows) is
    left-padded after them. The padding sits between the shared start and
    the row's own tokens, masked out, so every row still ends at the right
    edge. The answers equal those of separate full passes up to float
    rounding (``tests/test_speech_llm.py``).

    Arguments
    ---------
    speech_llm : SpeechLLM
        The model.
    audio_embeddings : torch.Tensor
        (batch, n_queries, hidden).
    prefix_ids : torch.Tensor
        (batch, time) right-padded prefixes.
    lengths : torch.Tensor
        (batch,) absolute prefix lengths.
    starts : torch.Tensor
        (batch,) first audio slot of each prefix.

    Returns
    -------
    (BaseModelOutputWithPast, torch.Tensor, torch.Tensor)
        The decoder's output (its cache holds every prefix), the attention
        mask and the position ids of the whole prefixes.
    """
    batch = prefix_ids.shape[0]
    shared = shared_prefix_length(prefix_ids, starts)
    cache = None
    if shared:
        out = speech_llm.decode_embeddings(
            speech_llm.hf_model.get_input_embeddings()(prefix_ids[:1, :shared]),
            torch.ones_like(prefix_ids[:1, :shared]),
            use_cache=True,
        )
        cache = out.past_key_values
        cache.batch_repeat_interleave(batch)
    embeddings, mask, positions = left_padded_prefix(
        speech_llm,
        audio_embeddings,
        prefix_ids[:, shared:],
        lengths - shared,
        starts - shared,
        0,
    )
    mask = torch.cat([torch.ones_like(prefix_ids[:, :shared]), mask], dim=1)
    positions = positions + shared
    out = speech_llm.decode_embeddings(
        embeddings,
        mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    )
    return out, mask, positions


@torch.no_grad()
def score_labels(
    speech_llm, audio_embeddings, prefix_ids, lengths, audio_start, label_ids
):
    """Log-likelihood of every label continuation after each prefix.

    The prefixes go through the LLM once (``encode_prefixes``: their
    shared start once for the batch); every label's continuation is then
    scored in one more pass on that KV cache (``LabelTree``).

    Arguments
    ---------
    speech_llm : SpeechLLM
        The model.
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
    out, attention_mask, position_ids = encode_prefixes(
        speech_llm, audio_embeddings, prefix_ids, lengths, audio_start
    )
    head = speech_llm.hf_model.get_output_embeddings()
    first_logp = head(out.last_hidden_state[:, -1]).float().log_softmax(-1)
    scores = first_logp[:, [ids[0] for ids in label_ids]]
    tree = LabelTree(label_ids, prefix_ids.device)
    if not len(tree.targets):  # one-token labels
        return scores
    embeddings = speech_llm.hf_model.get_input_embeddings()(tree.inputs)
    batch = prefix_ids.shape[0]
    out = speech_llm.decode_embeddings(
        embeddings.expand(batch, -1, -1),
        tree.attention_mask(attention_mask, embeddings.dtype),
        position_ids=position_ids[:, -1:] + 1 + tree.offsets,
        past_key_values=out.past_key_values,
        use_cache=True,
    )
    logp = head(out.last_hidden_state).float().log_softmax(-1)
    token_logp = logp[:, torch.arange(len(tree.targets)), tree.targets]
    return scores.index_add(1, tree.owners, token_logp)


class LabelTree:
    """Every label's continuation side by side, each one seeing only itself.

    After the prompt, the labels' tokens (all but each label's first,
    which the prompt's last position scores) go into one pass of
    ``sum(len(label) - 1)`` positions per row. A custom attention mask
    lets each token see the prompt and its own label's earlier tokens, and
    its position id continues the prompt as if it were alone, so each
    token's log-probability is that of the label scored on its own. One
    pass on the prompt's KV cache replaces repeating that cache once per
    label (``transformers`` scores sequences one by one or repeats the
    cache; it has no shared-prefix tree). The mask is a custom 4-D one,
    which the eager and SDPA attentions take (``SpeechLLM`` loads the
    model's default, SDPA).

    Arguments
    ---------
    label_ids : list of list of int
        Token ids of each label continuation.
    device : torch.device
        Where the tensors go.

    Example
    -------
    >>> tree = LabelTree([[7, 8, 9], [5], [6, 4]], "cpu")
    >>> tree.inputs.tolist(), tree.targets.tolist(), tree.owners.tolist()
    ([[7, 8, 6]], [8, 9, 4], [0, 0, 2])
    >>> tree.offsets.tolist()
    [[0, 1, 0]]
    >>> tree.attention_mask(torch.ones(1, 2), torch.float32)[0, 0] == 0
    tensor([[ True,  True,  True, False, False],
            [ True,  True,  True,  True, False],
            [ True,  True, False, False,  True]])
    """

    def __init__(self, label_ids, device):
        inputs, targets, owners, offsets = [], [], [], []
        for k, ids in enumerate(label_ids):
            for j in range(len(ids) - 1):
                inputs.append(ids[j])
                targets.append(ids[j + 1])
                owners.append(k)
                offsets.append(j)
        as_long = dict(dtype=torch.long, device=device)
        self.inputs = torch.tensor([inputs], **as_long)
        self.targets = torch.tensor(targets, **as_long)
        self.owners = torch.tensor(owners, **as_long)
        self.offsets = torch.tensor([offsets], **as_long)

    def attention_mask(self, prompt_mask, dtype):
        """Additive (batch, 1, tree, prompt + tree) mask: 0 where seen.

        Arguments
        ---------
        prompt_mask : torch.Tensor
            (batch, prompt) 1 where the prompt has a token, 0 on padding.
        dtype : torch.dtype
            The model's dtype.

        Returns
        -------
        torch.Tensor
        """
        owners, offsets = self.owners, self.offsets[0]
        own = (owners[:, None] == owners[None]) & (
            offsets[None] <= offsets[:, None]
        )
        batch, size = prompt_mask.shape[0], len(owners)
        sees = torch.cat(
            [
                prompt_mask.bool()[:, None, None].expand(-1, 1, size, -1),
                own.expand(batch, 1, size, size),
            ],
            dim=-1,
        )
        blocked = torch.full(
            sees.shape, torch.finfo(dtype).min, dtype=dtype, device=sees.device
        )
        return blocked.masked_fill(sees, 0.0)


@torch.no_grad()
def generate_answers(
    speech_llm,
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
    speech_llm : SpeechLLM
        The model.
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
    pad_id = speech_llm.tokenizer.pad_token_id
    pad_id = stop_ids[0] if pad_id is None else pad_id
    embeddings, attention_mask, _ = left_padded_prefix(
        speech_llm, audio_embeddings, prefix_ids, lengths, audio_start, pad_id
    )
    generated = speech_llm.model.generate(
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
