"""A disk cache of frozen-encoder outputs, shared by epochs and phases.

The encoder is frozen in every phase, so its frames are computed once per
utterance and stored as one small file each (float16 by default). The cache
folder is named after a key that hashes the encoder's identity (source,
class, config, and the size and time of local weight files) and the audio
settings, so a changed encoder never reads stale features.

Authors
 * speechbrain-emosllm contributors 2026
"""

import hashlib
import json
import os
import re

import torch
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

logger = get_logger(__name__)


def _local_weights_fingerprint(source):
    if not os.path.isdir(source):
        return None
    return sorted(
        (
            name,
            os.path.getsize(os.path.join(source, name)),
            int(os.path.getmtime(os.path.join(source, name))),
        )
        for name in os.listdir(source)
        if name.endswith((".safetensors", ".bin", ".json"))
    )


def feature_cache_key(encoder, encoder_source, sample_rate, dtype="float16"):
    """Short hash identifying an encoder and its audio settings.

    Arguments
    ---------
    encoder : torch.nn.Module
        The encoder (its class and configuration enter the key).
    encoder_source : str
        Hub id or local folder of its weights.
    sample_rate : int
        Sampling rate of the audio fed to it.
    dtype : str
        Storage dtype of the features.

    Returns
    -------
    str

    Example
    -------
    >>> a = feature_cache_key(torch.nn.Linear(2, 2), "x", 16000)
    >>> a == feature_cache_key(torch.nn.Linear(2, 2), "x", 8000)
    False
    """
    config = None
    for module in encoder.modules():
        if hasattr(module, "config") and hasattr(module.config, "to_dict"):
            config = module.config.to_dict()
            break
    identity = {
        "class": type(encoder).__module__ + "." + type(encoder).__qualname__,
        "source": encoder_source,
        "weights": _local_weights_fingerprint(encoder_source),
        "config": config,
        "sample_rate": sample_rate,
        "dtype": dtype,
        "version": 1,
    }
    options = getattr(encoder, "cache_options", None)
    if options:  # e.g. every layer rather than the last one
        identity["options"] = options
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cached_feature_path(folder, utt_id, wav):
    """File holding one utterance's frames, keyed on what they depend on.

    The name keeps a readable form of the id and adds a hash of the id and
    of the audio file's path, size and modification time: a changed audio
    file gets new frames, and ids that read the same once escaped
    (``spk1/utt1``, ``spk1_utt1``) never share a file.

    Arguments
    ---------
    folder : str
        Cache folder (already keyed on the encoder).
    utt_id : str
        Utterance id.
    wav : str
        Its audio file.

    Returns
    -------
    str

    Example
    -------
    >>> a = cached_feature_path("c", "spk1/utt1", "no/such.wav")
    >>> b = cached_feature_path("c", "spk1_utt1", "no/such.wav")
    >>> os.path.basename(a)[:10], a == b
    ('spk1_utt1-', False)
    """
    try:
        stat = os.stat(wav)
        state = (stat.st_size, stat.st_mtime_ns)
    except OSError:
        state = None
    identity = json.dumps([utt_id, os.path.abspath(wav), state])
    digest = hashlib.sha1(identity.encode()).hexdigest()[:16]
    readable = re.sub(r"[^\w.-]", "_", utt_id)[:80]
    return os.path.join(folder, f"{readable}-{digest}.pt")


def readable_cache_file(path):
    """Whether a cache file is complete (ends with a zip directory record).

    ``torch.save`` writes a zip archive, whose last 22 bytes start with the
    end-of-central-directory signature; a truncated file lacks it.

    Arguments
    ---------
    path : str
        Cache file.

    Returns
    -------
    bool

    Example
    -------
    >>> readable_cache_file("no/such/file.pt")
    False
    """
    try:
        with open(path, "rb") as f:
            f.seek(-22, os.SEEK_END)
            return f.read(4) == b"PK\x05\x06"
    except OSError:
        return False


@torch.no_grad()
def cache_encoder_outputs(
    encoder, dataset, folder, batch_size=8, device="cpu", dtype="float16"
):
    """Encodes every utterance of ``dataset`` not yet in ``folder``.

    Arguments
    ---------
    encoder : callable
        ``encoder(wavs, wav_lens)`` -> (batch, frames, width).
    dataset : speechbrain.dataio.dataset.DynamicItemDataset
        Provides ``id`` and ``sig``.
    folder : str
        Keyed cache folder.
    batch_size : int
        Clips encoded together.
    device : str
        Where to run the encoder.
    dtype : str
        Storage dtype.

    Returns
    -------
    int
        Number of utterances encoded (0 when all were cached).
    """
    os.makedirs(folder, exist_ok=True)
    todo = []
    with dataset.output_keys_as(["id", "wav"]):
        for i, item in enumerate(dataset):
            path = cached_feature_path(folder, item["id"], item["wav"])
            if os.path.isfile(path) and not readable_cache_file(path):
                logger.warning("Re-encoding %s: unreadable cache file", path)
            elif os.path.isfile(path):
                continue
            todo.append(i)
    if not todo:
        return 0
    # Iterating a DataLoader draws from torch's global generator: fork it so
    # that a run with the cache trains exactly like a run without.
    with torch.random.fork_rng(devices=[]):
        _encode_into(encoder, dataset, todo, folder, batch_size, device, dtype)
    return len(todo)


def _encode_into(encoder, dataset, todo, folder, batch_size, device, dtype):
    from speechbrain.dataio.batch import PaddedBatch

    subset = torch.utils.data.Subset(dataset, todo)
    loader = torch.utils.data.DataLoader(
        subset, batch_size=batch_size, collate_fn=PaddedBatch
    )
    encoder.eval()
    with dataset.output_keys_as(["id", "wav", "sig"]):
        for batch in tqdm(loader, desc=f"caching features ({len(todo)})"):
            wavs, wav_lens = batch.sig
            frames = encoder(wavs.to(device), wav_lens.to(device))
            lengths = torch.round(wav_lens * frames.shape[1]).long()
            for utt_id, wav, row, length in zip(
                batch.id, batch.wav, frames, lengths
            ):
                path = cached_feature_path(folder, utt_id, wav)
                torch.save(
                    row[: max(int(length), 1)]
                    .to(getattr(torch, dtype))
                    .cpu()
                    .clone(),
                    path + ".tmp",
                )
                os.replace(path + ".tmp", path)  # never a half-written file


def load_cached_features(folder, utt_id, wav):
    """Frames of one utterance as float32, with a clear error if absent.

    Arguments
    ---------
    folder : str
        Keyed cache folder.
    utt_id : str
        Utterance id.
    wav : str
        Its audio file.

    Returns
    -------
    torch.Tensor
        (frames, width).
    """
    path = cached_feature_path(folder, utt_id, wav)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No cached features for {utt_id} ({path}); delete the cache "
            "folder or set feature_cache: False."
        )
    try:
        return torch.load(path).float()
    except Exception as error:  # torch raises several error types
        raise RuntimeError(
            f"Cached features of {utt_id} are unreadable ({path}: {error}); "
            "run again: the cache check re-encodes such files."
        ) from error
