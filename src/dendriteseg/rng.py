"""One way to take randomness: an int seed, a NumPy Generator, or None."""

from __future__ import annotations

import numpy as np

Rng = int | np.random.Generator | None


def as_generator(rng: Rng) -> np.random.Generator:
    """A Generator from a seed (or the Generator itself)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
