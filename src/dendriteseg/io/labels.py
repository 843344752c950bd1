"""Label volumes: uint8, 1 = dendrite (solid), 0 = background.

Masks saved as 0/255 (ImageJ, most image editors) are accepted too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dendriteseg.errors import InputError


def as_binary_labels(array: Any, source: str = "labels") -> np.ndarray:
    """Check that ``array`` holds a binary mask and return it as bool.

    Accepted: bool, or numbers that are all 0/1, or all 0/255.

    Raises
    ------
    InputError
        NaN values, or any other value; the message names ``source``.

    Examples
    --------
    >>> as_binary_labels(np.array([0, 255, 0], np.uint8)).tolist()
    [False, True, False]
    """
    data = np.asarray(array)
    if data.dtype == bool:
        return data
    if data.dtype.kind not in "iuf":
        raise InputError(f"{source}: labels must be numbers, got {data.dtype}")
    if data.dtype.kind == "f" and np.isnan(data).any():
        raise InputError(f"{source}: labels contain NaN")
    if data.size == 0:
        return data.astype(bool)
    low, high = data.min(), data.max()
    if low >= 0 and high <= 1 and (data.dtype.kind != "f" or np.all((data == 0) | (data == 1))):
        return data != 0
    if low >= 0 and high == 255 and np.all((data == 0) | (data == 255)):
        return data != 0
    found = np.unique(data[: min(len(data), 4)])[:6]
    raise InputError(
        f"{source}: labels must be binary (0/1 or 0/255), found values such as "
        f"{', '.join(f'{v:g}' for v in found)} (range {low:g}..{high:g})"
    )
