"""K-shot training subsets: K videos per class, drawn reproducibly from a training list.

Selection: within each class, videos are ranked by ``sha256(f"{seed}\\0{path}")`` (ties, impossible in
practice, by line number) and the first K are kept. This depends only on the seed and the paths: not
on the list's order, the machine, the Python or numpy version, ``hash()`` randomisation or set order.
A consequence worth having: for one seed the shots are nested (the 2-shot set is inside the 4-shot set,
and so on), so a K sweep adds data rather than redrawing it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Optional, Sequence

from vidprism_ds.recipes.errors import RecipeError
from vidprism_ds.recipes.listfile import ListLine


def selection_key(seed: int, path: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{path}".encode("utf-8")).digest()


def _class_label(label: int, class_names: Optional[Sequence[str]]) -> str:
    return f"class {label} ({class_names[label]!r})" if class_names else f"class {label}"


def draw_few_shot(lines: Sequence[ListLine], shots: int, seed: int,
                  class_names: Optional[Sequence[str]] = None) -> list[ListLine]:
    """``shots`` lines per class, classes in ascending label order, each class's lines in selection order.

    With ``class_names`` every class of that list must be present (and labels must be in range); without
    it the classes are the labels found in ``lines``. A class with fewer than ``shots`` videos is refused.
    """
    if shots < 1:
        raise RecipeError(f"--shots must be a positive integer, got {shots}")
    if seed < 0:
        raise RecipeError(f"--seed must be a non-negative integer, got {seed}")
    seen: dict[str, int] = {}
    by_class: dict[int, list[ListLine]] = defaultdict(list)
    for line in lines:
        if line.body in seen:
            # A repeated path would be drawn as two different shots of one video.
            raise RecipeError(f"path {line.body!r} is listed twice (lines {seen[line.body]} and {line.line_no})")
        seen[line.body] = line.line_no
        if class_names is not None and line.label >= len(class_names):
            raise RecipeError(f"line {line.line_no}: label {line.label} is out of range for {len(class_names)} classes")
        by_class[line.label].append(line)
    if not by_class:
        raise RecipeError("the training list has no videos")
    classes = range(len(class_names)) if class_names is not None else sorted(by_class)
    too_small = [c for c in classes if len(by_class.get(c, ())) < shots]
    if too_small:
        first = too_small[0]
        others = f"; {len(too_small) - 1} other class(es) are too small as well" if len(too_small) > 1 else ""
        raise RecipeError(f"--shots {shots} is more than {_class_label(first, class_names)} has "
                          f"({len(by_class.get(first, ()))} videos){others}")
    drawn = []
    for c in classes:
        ranked = sorted(by_class[c], key=lambda line: (selection_key(seed, line.body), line.line_no))
        drawn.extend(ranked[:shots])
    return drawn


def selection_digest(lines: Sequence[ListLine]) -> str:
    """sha256 of the drawn ``path label`` lines: one short string that pins a selection in tests and logs."""
    text = "".join(f"{line.body} {line.label}\n" for line in lines)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
