"""Reading the speech LLM's answers: label scoring and generation.

Label scoring runs the prompt once and reuses its KV cache for every label
continuation (all labels in one more pass); generation is greedy. Both take
right-padded prefixes and move them to the right edge (left padding), as
decoder-only models need.

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


@torch.no_grad()
def score_labels(
    speech_llm, audio_embeddings, prefix_ids, lengths, audio_start, label_ids
):
    """Log-likelihood of every label continuation after each prefix.

    The prefixes go through the LLM once; the KV cache is then repeated
    for the labels, which are scored together in one more pass.

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
    device = prefix_ids.device
    batch, n_labels = prefix_ids.shape[0], len(label_ids)
    embeddings, attention_mask, position_ids = left_padded_prefix(
        speech_llm, audio_embeddings, prefix_ids, lengths, audio_start, 0
    )
    out = speech_llm.decode_embeddings(
        embeddings,
        attention_mask,
        position_ids=position_ids,
        use_cache=True,
    )
    head = speech_llm.hf_model.get_output_embeddings()
    first_logp = head(out.last_hidden_state[:, -1]).float().log_softmax(-1)

    label_lengths = torch.tensor([len(ids) for ids in label_ids], device=device)
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
    out = speech_llm.decode_embeddings(
        speech_llm.hf_model.get_input_embeddings()(inputs),
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
