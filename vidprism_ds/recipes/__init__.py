"""Dataset recipes: Kinetics-710 lists (``kinetics``), few-shot subsets (``fewshot``) and zero-shot
class selection (``zeroshot``).

Command-line front ends: ``data_prep/build_k710.py``, ``data_prep/fewshot.py`` and
``python -m vidprism_ds.recipes.zeroshot``; the rules are documented in docs/recipes.md. Submodules
are imported explicitly (nothing is re-exported here), so ``python -m`` on one of them runs it once.
"""
