"""Per-step loss terms kept on the device until a logging step reads them back in one go.

Reading a loss with ``float()`` every optimizer step makes the host wait for the GPU once per term
(about nine waits a step), which lets the GPU run dry while the host prepares the next batch. The
training loop hands each step's terms here as device tensors; ``flush`` (at logging steps, before a
checkpoint, and at the end) stacks everything pending and reads it with one device-to-host copy.
"""

from __future__ import annotations

import torch


class StepLossLog:
    def __init__(self):
        self._entries: list[dict] = []  # step, epoch, lr: already host values
        self._names: list[tuple[str, ...]] = []
        self._values: list[torch.Tensor] = []  # (terms,) fp32, on the device

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: dict, terms: dict[str, torch.Tensor]) -> None:
        """Queue one optimizer step: ``entry`` (host values) plus its loss terms (device scalars)."""
        self._entries.append(entry)
        self._names.append(tuple(terms))
        self._values.append(torch.stack([value.detach().float().reshape(()) for value in terms.values()]))

    def flush(self) -> list[dict]:
        """The pending steps as history entries with float terms; one host read for all of them."""
        if not self._entries:
            return []
        flat = torch.cat(self._values).tolist()
        history, position = [], 0
        for entry, names in zip(self._entries, self._names):
            values = flat[position:position + len(names)]
            position += len(names)
            history.append({**entry, **dict(zip(names, values))})
        self._entries, self._names, self._values = [], [], []
        return history
