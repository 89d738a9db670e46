"""Per-step loss terms kept on the device until a logging step reads them back in one go.

Reading a loss with ``float()`` every optimizer step makes the host wait for the GPU once per term
(about nine waits a step), which lets the GPU run dry while the host prepares the next batch. The
training loop hands each step's terms here as device tensors; ``flush`` (at logging steps, before a
checkpoint, and at the end) stacks everything pending and reads it with one device-to-host copy.

``GlobalBatchLoss`` makes a step's terms the mean over its whole global batch (every micro-batch of every
data-parallel rank) before they are queued.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


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


class GlobalBatchLoss:
    """An optimizer step's loss terms as its global batch's mean: the mean over this rank's micro-batches
    of the step, then over the data-parallel ranks (one all-reduce of a few scalars per optimizer step, on
    the device: no host read). Every micro-batch holds ``train.micro_batch`` clips, so this is the mean
    over all the step's clips, the same number whatever the world size and accumulation (the history of
    a recipe on 1 and on N processes can be compared step by step)."""

    def __init__(self):
        self._sums: dict[str, torch.Tensor] = {}
        self._micro_batches = 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        """One micro-batch's loss terms (device scalars)."""
        for name, value in terms.items():
            value = value.detach().float().reshape(())
            self._sums[name] = self._sums[name] + value if name in self._sums else value
        self._micro_batches += 1

    def global_mean(self, dp_size: int, group=None) -> dict[str, torch.Tensor]:
        """Collective over the data-parallel group (every replica calls it at the same step); resets."""
        names = list(self._sums)
        means = torch.stack([self._sums[name] for name in names]) / max(1, self._micro_batches)
        if dp_size > 1:
            dist.all_reduce(means, group=group)
            means = means / dp_size
        self._sums, self._micro_batches = {}, 0
        return dict(zip(names, means.unbind()))
