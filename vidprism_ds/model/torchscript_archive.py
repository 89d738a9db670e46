"""Read the weights of a TorchScript archive as the zip file it is, without executing any of it.

``torch.jit.load`` runs an archive's compiled code while loading (a class's ``__setstate__``, for one):
a crafted "CLIP weights" file can do what it wants before any key is checked. OpenAI's released CLIP
``ViT-*.pt`` files are such archives, so they are read here instead:

- ``<prefix>/data.pkl`` is unpickled by an unpickler that knows four things only: tensor rebuilding
  (``torch._utils._rebuild_tensor_v2``), storage types, ``collections.OrderedDict``, and TorchScript
  classes (``__torch__.*``), which become inert records of their attribute dict. Any other global
  (``os.system``, ``builtins.eval`` ...) is refused.
- Tensor data come from ``<prefix>/data/<key>`` (the archive's persistent storages).
- Which attributes are parameters or buffers (the state dict) is read from the ``__parameters__`` and
  ``__buffers__`` declarations in the archive's ``code/`` files, as text, never run.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from pathlib import Path

import torch

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
_CLASS_LINE = re.compile(r"^class (\w+)\(Module\):")
_DECLARED_LINE = re.compile(r"^\s+__(parameters|buffers)__ = \[(.*)\]")


class TorchScriptArchiveError(pickle.UnpicklingError):
    """The archive holds something other than modules and tensors, or is malformed."""


class _ScriptObject:
    """An inert stand-in for an instance of a TorchScript class: its attributes, nothing else."""

    qualified_name = ""

    def __setstate__(self, state):
        self.attributes = dict(state) if isinstance(state, dict) else {}


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _archive_prefix(archive: zipfile.ZipFile) -> str:
    for name in archive.namelist():
        if name.endswith("/data.pkl") and name.count("/") == 1:
            return name[:-len("data.pkl")]
    raise TorchScriptArchiveError("no <name>/data.pkl: not a TorchScript archive")


def declared_tensors(archive: zipfile.ZipFile, prefix: str) -> dict[str, set[str]]:
    """qualified class name -> names of its parameters and buffers, from the code files' text."""
    declared: dict[str, set[str]] = {}
    code_root = prefix + "code/"
    for name in archive.namelist():
        if not (name.startswith(code_root) and name.endswith(".py")):
            continue
        module = name[len(code_root):-len(".py")].replace("/", ".")
        current = None
        for line in archive.read(name).decode("utf-8", errors="replace").splitlines():
            match = _CLASS_LINE.match(line)
            if match:
                current = f"{module}.{match.group(1)}"
                declared.setdefault(current, set())
                continue
            match = _DECLARED_LINE.match(line)
            if match and current is not None:
                declared[current].update(re.findall(r'"([^"]*)"', match.group(2)))
    return declared


class _WeightsUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix
        self.classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self.classes:
                self.classes[qualified] = type(name, (_ScriptObject,), {"qualified_name": qualified})
            return self.classes[qualified]
        raise TorchScriptArchiveError(f"refused global {module}.{name}: a weights archive needs only tensors "
                                      "and modules")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise TorchScriptArchiveError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        elements = len(raw) // torch.empty((), dtype=storage_type.dtype).element_size()
        if elements < numel:
            raise TorchScriptArchiveError(f"storage {key} holds {elements} elements, {numel} declared")
        untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else torch.UntypedStorage(0)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=storage_type.dtype, _internal=True)


def _collect(obj: _ScriptObject, declared: dict[str, set[str]], prefix: str, out: dict) -> None:
    names = declared.get(obj.qualified_name, set())
    for attribute, value in getattr(obj, "attributes", {}).items():
        if isinstance(value, _ScriptObject):
            _collect(value, declared, f"{prefix}{attribute}.", out)
        elif isinstance(value, torch.Tensor) and attribute in names:
            out[f"{prefix}{attribute}"] = value


def read_torchscript_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict (parameters and buffers, by attribute path) of a TorchScript archive."""
    with zipfile.ZipFile(path) as archive:
        prefix = _archive_prefix(archive)
        declared = declared_tensors(archive, prefix)
        root = _WeightsUnpickler(archive.read(prefix + "data.pkl"), archive, prefix).load()
    if not isinstance(root, _ScriptObject):
        raise TorchScriptArchiveError("data.pkl does not hold a TorchScript module")
    state: dict[str, torch.Tensor] = {}
    _collect(root, declared, "", state)
    return state
