"""Reading a weights file as tensors only: no file handed to drgrade runs code.

A ``.pt`` / ``.pth`` / ``.ckpt`` is a pickle, and ``torch.load(weights_only=False)`` runs whatever
the pickle asks for. Weights are therefore read one of three ways, none of which executes code
from the file:

- a zip written by ``torch.save``: ``torch.load(weights_only=True)`` (tensors, containers and
  plain values; anything else is refused);
- a TorchScript archive (OpenAI's original ``RN50.pt``): ``torch.jit.load`` on the CPU, which
  reads tensors and compiled TorchScript without unpickling Python objects; only its state dict
  is kept, its code is never called;
- ``.safetensors``: the safetensors reader (a header and raw tensors).
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from drgrade.errors import WeightsFileError
from drgrade.files import archive_problem

#: How to make a loadable file from one that holds other Python objects, in a trusted Python.
CONVERT_HINT = (
    "If you trust the file, convert it once in a Python you trust: "
    "torch.save(torch.load(PATH, weights_only=False)['state_dict'], 'weights.pt') "
    "(or without ['state_dict'] when it is a plain state dict), and pass weights.pt"
)


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip holding ``<name>/constants.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, read without running code from it.

    A checkpoint dict holding ``state_dict`` gives that entry, and a ``module.`` prefix (left by
    DistributedDataParallel) is removed.

    Args:
        path: a ``torch.save`` file, a TorchScript archive or a ``.safetensors`` file.

    Raises:
        WeightsFileError: the file is missing, unreadable, or holds more than tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsFileError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif zipfile.is_zipfile(path) and (problem := archive_problem(path)):
            raise WeightsFileError(f"{path} was refused: {problem}")
        elif is_torchscript(path):
            with warnings.catch_warnings():  # TorchScript is deprecated, but OpenAI's RN50.pt is one
                warnings.filterwarnings("ignore", message=r"`torch.jit.load` is deprecated")
                state = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsFileError(
            f"{path} was refused: it holds objects other than tensors and plain values "
            f"({str(error).splitlines()[0][:160]}); drgrade never runs code from a weights file. "
            + CONVERT_HINT
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise WeightsFileError(f"{path} is not a readable weights file ({str(error)[:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFileError(f"{path} holds no state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}
