"""The README's napari screenshot: the sample scan, its segmentation, a few scribbles, the widgets docked.

xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/napari_screenshot.py docs/images/napari.png
"""

from __future__ import annotations

import sys

import numpy as np


def main(out: str) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from dendriteseg.napari._sample import make_sample
    from dendriteseg.napari.viewer import open_viewer

    viewer = napari.Viewer(title="dendriteseg", show=True)
    (image, image_attrs, _), (label, _, _) = make_sample()
    viewer.add_image(image, **image_attrs)
    open_viewer(viewer=viewer)
    docks = dict(viewer.window.dock_widgets)
    segment, tune = docks["Segment"], docks["Correct and fine-tune"]
    worker = segment.run("unet3d_default")
    while worker.is_running:
        QApplication.processEvents()
    scribbles = tune.new_scribbles()
    painted = np.zeros(image.shape, np.uint8)
    z = image.shape[0] // 2
    for row in (30, 64, 98):  # three strokes across the slice: dendrite where the label says so
        painted[z, row : row + 3, 20:108] = label[z, row : row + 3, 20:108] + 1
    scribbles.data = painted
    viewer.dims.set_point(0, z)
    viewer.window._qt_window.resize(1500, 1000)
    for _ in range(20):
        QApplication.processEvents()
    viewer.screenshot(out, canvas_only=False)
    print(f"wrote {out}; {segment.verdict.text()}")
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/images/napari.png")
