"""VidPrism-DS: VidPrism heterogeneous temporal MoE on CLIP, trained with DeepSpeed."""
__version__ = "0.1.0"
