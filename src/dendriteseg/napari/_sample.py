"""Sample data: a small synthetic XCT scan and its exact label (image-domain generator, no extras)."""

from __future__ import annotations

from typing import Any


def make_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """A 16 x 128 x 128 synthetic scan of dendrites in a melt, and its exact label."""
    from dendriteseg.synth.scan import make_image_scan

    scan = make_image_scan((16, 128, 128), rng=7)
    return [
        (scan["image"], {"name": "synthetic scan"}, "image"),
        (scan["label"], {"name": "exact label", "opacity": 0.4}, "labels"),
    ]
