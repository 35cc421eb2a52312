"""Finding a phase's best checkpoint and starting the next phase from it.

Authors
 * speechbrain-emosllm contributors 2026
"""

import os
import pathlib

from speechbrain.utils.checkpoints import (
    DEFAULT_LOAD_HOOKS,
    DEFAULT_TRANSFER_HOOKS,
    Checkpoint,
    Checkpointer,
    get_default_hook,
    torch_patched_state_dict_load,
)
from speechbrain.utils.distributed import ddp_barrier, if_main_process

# Every phase stores this lower-is-better number in its checkpoints' meta:
# validation loss or WER in P1/P2, 1 - macro-F1 in P3.
SELECTION_KEY = "selection_error"


class AtomicCheckpointer(Checkpointer):
    """A SpeechBrain ``Checkpointer`` whose checkpoints appear all at once.

    SpeechBrain writes a checkpoint folder file by file, meta file first, so
    a job killed during a save leaves a folder that looks complete and
    breaks the next recovery. Here each checkpoint is written in a hidden
    staging folder and renamed into place (atomic on one file system) only
    when every file is written.

    Arguments
    ---------
    checkpoints_dir : str
        Where checkpoints are kept.
    **kwargs
        Passed to ``Checkpointer``.

    Example
    -------
    >>> import tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> ckpt = AtomicCheckpointer(folder, {"layer": torch.nn.Linear(2, 2)})
    >>> saved = ckpt.save_checkpoint(verbosity=0)
    >>> saved.path.parent == ckpt.checkpoints_dir, saved.path.exists()
    (True, True)
    >>> ckpt.find_checkpoint().path == saved.path
    True
    """

    STAGING = ".staging"

    def _staged(self, path):
        return path.parent / self.STAGING / path.name

    def _new_checkpoint_dirpath(self):
        return self._staged(super()._new_checkpoint_dirpath())

    def _custom_checkpoint_dirpath(self, name):
        return self._staged(super()._custom_checkpoint_dirpath(name))

    def save_checkpoint(self, *args, **kwargs):
        """Saves in the staging folder, then renames into place."""
        saved = super().save_checkpoint(*args, **kwargs)
        if saved is not None and if_main_process():
            final = pathlib.Path(self.checkpoints_dir) / saved.path.name
            os.replace(saved.path, final)
            paramfiles = {
                name: final / pathlib.Path(path).name
                for name, path in saved.paramfiles.items()
            }
            saved = Checkpoint(final, saved.meta, paramfiles)
        # Under DDP every process then lists the checkpoints to choose what
        # to delete, and each deletion is a collective: one that listed
        # before the rename would choose differently and deadlock the run.
        ddp_barrier()
        return saved


def find_best_checkpoint(phase_folder):
    """The checkpoint a phase selected as its best.

    Arguments
    ---------
    phase_folder : str
        Output folder of a phase (its checkpoints are in ``save/``).

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint

    Example
    -------
    >>> find_best_checkpoint("no/such/phase")
    Traceback (most recent call last):
    ...
    FileNotFoundError: This phase starts from the best checkpoint of ...
    """
    save_folder = os.path.join(phase_folder, "save")
    checkpoint = None
    if os.path.isdir(save_folder):
        checkpoint = Checkpointer(save_folder).find_checkpoint(
            min_key=SELECTION_KEY
        )
    if checkpoint is None:
        raise FileNotFoundError(
            "This phase starts from the best checkpoint of the previous "
            f"one, but {save_folder} holds none: run the previous phase "
            "first (same --seed and output folders), or point "
            "--previous_phase_folder at its output folder."
        )
    return checkpoint


def transfer_parameters(checkpoint, modules, refit=None):
    """Loads the parameter files of ``checkpoint`` into ``modules``.

    Uses each module's SpeechBrain transfer (or load) hook, so custom
    savers such as the LoRA-only one of ``SpeechLLM`` are honoured.
    Modules without a file in the checkpoint are left untouched.

    Arguments
    ---------
    checkpoint : speechbrain.utils.checkpoints.Checkpoint
        Source checkpoint.
    modules : dict
        Recoverable name -> module.
    refit : dict, optional
        Recoverable name -> prefix of the parameters that this phase sets
        afresh (e.g. ``"utterance_token.head."``): they are not loaded, so the
        predecessor's may have another shape; every other parameter must
        match (``load_parameters_except``).

    Returns
    -------
    list of str
        Names of the modules that were loaded.

    Raises
    ------
    ValueError
        A parameter's shape differs between the checkpoint and this phase's
        module (e.g. a predecessor built with another ``n_queries``): the
        message names the file.

    Example
    -------
    >>> import tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "qpmapper.ckpt")
    >>> torch.save(torch.nn.Linear(4, 8).state_dict(), path)
    >>> saved = Checkpoint(os.path.dirname(path), {}, {"qpmapper": path})
    >>> transfer_parameters(saved, {"qpmapper": torch.nn.Linear(4, 8)})
    ['qpmapper']
    >>> try:
    ...     transfer_parameters(saved, {"qpmapper": torch.nn.Linear(4, 2)})
    ... except ValueError as error:
    ...     message = str(error)
    >>> print(message.split(": ")[1])
    its qpmapper does not fit this phase's (size mismatch for weight
    >>> print(message.split("; ")[1].split(":")[0])
    size mismatch for bias
    """
    loaded = []
    for name, module in modules.items():
        path = checkpoint.paramfiles.get(name)
        if path is None:
            continue
        try:
            _transfer_one(module, path, (refit or {}).get(name))
        except RuntimeError as error:
            if "size mismatch" not in str(error):
                raise
            # torch's message: a header, then one line per mismatch.
            lines = [line.strip() for line in str(error).splitlines()]
            details = "; ".join(line.rstrip(".") for line in lines[1:] if line)
            raise ValueError(
                f"{path}: its {name} does not fit this phase's ({details}). "
                "Build this phase with the predecessor's options (e.g. "
                "n_queries, qpmapper_dim, lora_rank) or start it from "
                "another --previous_phase_folder."
            ) from error
        loaded.append(name)
    return loaded


def _transfer_one(module, path, refit_prefix):
    """Loads one parameter file with the module's hook (or refits part)."""
    if refit_prefix is not None:
        load_parameters_except(module, path, refit_prefix)
        return
    hook = get_default_hook(module, DEFAULT_TRANSFER_HOOKS)
    if hook is None:
        hook = get_default_hook(module, DEFAULT_LOAD_HOOKS)
    hook(module, path)


def load_parameters_except(module, path, prefix):
    """Loads a state dict file into ``module``, except ``prefix...`` keys.

    Arguments
    ---------
    module : torch.nn.Module
        Target (a DDP wrapper is looked through).
    path : str
        A ``torch.save``'d state dict.
    prefix : str
        Parameters whose names start with it keep the module's values.

    Example
    -------
    >>> import torch, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.ckpt")
    >>> old = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2),
    ...                            "b": torch.nn.Linear(3, 1)})
    >>> torch.save(old.state_dict(), path)
    >>> new = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2),
    ...                            "b": torch.nn.Linear(3, 5)})
    >>> load_parameters_except(new, path, "b.")
    >>> torch.equal(new["a"].weight, old["a"].weight), new["b"].out_features
    (True, 5)
    >>> try:
    ...     load_parameters_except(torch.nn.Linear(3, 5), path, "b.")
    ... except ValueError as error:
    ...     print(str(error).split("; ")[-1])
    missing weight, bias
    """
    target = getattr(module, "module", module)
    state = torch_patched_state_dict_load(path, "cpu")
    kept = {k: v for k, v in state.items() if not k.startswith(prefix)}
    result = target.load_state_dict(kept, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(prefix)]
    if result.unexpected_keys or missing:
        raise ValueError(
            f"{os.path.basename(path)} does not fit the module: unexpected "
            f"{', '.join(result.unexpected_keys) or 'nothing'}; missing "
            f"{', '.join(missing) or 'nothing'}"
        )
