"""The ``grid`` model family: multi-resolution integer latent grids, a
checkerboard context entropy model and a tiny LSQ-quantized synthesis MLP
(after SHACIRA, ``shared/papers/002``, and Cool-chic)."""
