"""K-shot selection: exact sizes, stability, a pinned selection, and refusal of too-large K."""

from __future__ import annotations

import hashlib
import random
from collections import Counter

import pytest

from vidprism_ds.recipes.errors import RecipeError
from vidprism_ds.recipes.fewshot import draw_few_shot, selection_digest, selection_key
from vidprism_ds.recipes.listfile import ListLine

CLASS_SIZES = (20, 16, 9, 4, 30)


def training_list(order_seed=None):
    lines = [ListLine(f"class_{c}/video {i:03d}.mp4", c, 0)
             for c, size in enumerate(CLASS_SIZES) for i in range(size)]
    if order_seed is not None:
        random.Random(order_seed).shuffle(lines)
    return [ListLine(line.body, line.label, n) for n, line in enumerate(lines, start=1)]


def test_selection_key_is_sha256_of_seed_and_path():
    # The documented ranking key, spelled out independently of the implementation.
    assert selection_key(0, "a/b c.mp4") == hashlib.sha256(b"0\x00a/b c.mp4").digest()
    assert selection_key(12, "x.mp4") == hashlib.sha256(b"12\x00x.mp4").digest()


@pytest.mark.parametrize("shots", [1, 2, 4])
def test_exact_shots_per_class(shots):
    drawn = draw_few_shot(training_list(), shots, seed=0)
    assert Counter(line.label for line in drawn) == {c: shots for c in range(len(CLASS_SIZES))}
    assert len({line.body for line in drawn}) == len(drawn)
    assert [line.label for line in drawn] == sorted(line.label for line in drawn)  # classes in order


def test_stable_pinned_and_independent_of_list_order():
    first = draw_few_shot(training_list(), 4, seed=7)
    again = draw_few_shot(training_list(), 4, seed=7)
    shuffled = draw_few_shot(training_list(order_seed=3), 4, seed=7)
    assert [l.body for l in first] == [l.body for l in again] == [l.body for l in shuffled]
    # Recorded once (and reproduced by a standalone sha256 ranking): a different algorithm, key,
    # tie-break or output order changes this digest, and with it every split users have drawn.
    assert selection_digest(first) == "b92a81f4be6df5d9d0334ac6b86af5e91daa3c5e62ee449e9e97efc73a89987f"


def test_seed_changes_selection_and_shots_are_nested():
    seed0 = {k: {l.body for l in draw_few_shot(training_list(), k, seed=0)} for k in (2, 4)}
    seed1 = {l.body for l in draw_few_shot(training_list(), 4, seed=1)}
    assert seed0[2] < seed0[4]
    assert seed1 != seed0[4]


def test_too_many_shots_names_the_class():
    with pytest.raises(RecipeError, match=r"--shots 10 is more than class 2 \('c'\) has \(9 videos\); 1 other"):
        draw_few_shot(training_list(), 10, seed=0, class_names=["a", "b", "c", "d", "e"])
    with pytest.raises(RecipeError, match=r"--shots 5 is more than class 3 has \(4 videos\)$"):
        draw_few_shot(training_list(), 5, seed=0)
    assert len(draw_few_shot(training_list(), 4, seed=0)) == 4 * len(CLASS_SIZES)  # the smallest class, exactly


def test_label_list_requires_every_class():
    with pytest.raises(RecipeError, match=r"class 5 \('f'\) has \(0 videos\)"):
        draw_few_shot(training_list(), 1, seed=0, class_names=list("abcdef"))
    with pytest.raises(RecipeError, match="out of range for 4 classes"):
        draw_few_shot(training_list(), 1, seed=0, class_names=list("abcd"))


def test_bad_shots_and_repeated_paths_refused():
    with pytest.raises(RecipeError, match="positive integer"):
        draw_few_shot(training_list(), 0, seed=0)
    repeated = training_list() + [ListLine("class_0/video 000.mp4", 0, 999)]
    with pytest.raises(RecipeError, match=r"listed twice \(lines 1 and 999\)"):
        draw_few_shot(repeated, 2, seed=0)
