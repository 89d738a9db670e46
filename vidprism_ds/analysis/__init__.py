"""Expert-specialisation analysis of a trained model (issue 6), usable on any exported checkpoint.

``collect`` runs a model over evaluation batches and keeps what the head exposes (readout weight per
expert, each expert's mean output, the sampler's kept frames); ``metrics`` reduces that to per-class
figures; ``plots`` draws them; ``loading`` rebuilds a model from an exported state dict and its
config. Command line: ``python -m vidprism_ds.analysis EXPORT --data DATA --out DIR``.
"""

from vidprism_ds.analysis.collect import Specialisation, collect, expert_names, sampler_rates
from vidprism_ds.analysis.metrics import expert_similarity, per_class_accuracy, weight_by_class

__all__ = ["Specialisation", "collect", "expert_names", "expert_similarity", "per_class_accuracy",
           "sampler_rates", "weight_by_class"]
