"""``dendriteseg view``: a napari viewer with a scan, its labels and the three widgets docked."""

from __future__ import annotations

from typing import Any

from dendriteseg.napari._reader import read_layers


def open_viewer(
    image: str | None = None, labels: list[str] | tuple[str, ...] = (), viewer: Any = None
) -> Any:
    """A viewer (``viewer``, or a new one) with ``image`` and ``labels`` opened through the plugin's
    reader and the Segment, Correct and fine-tune, and Compare widgets docked; returns the viewer."""
    import napari

    from dendriteseg.napari._widgets import CompareWidget, FinetuneWidget, SegmentWidget

    viewer = viewer or napari.Viewer(title="dendriteseg")
    for path, kind in [(image, "image")] * bool(image) + [(p, "labels") for p in labels]:
        for data, attributes, found in read_layers(path):
            add = viewer.add_labels if (kind == "labels" or found == "labels") else viewer.add_image
            add(data, **attributes)
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment", area="right")
    tune = viewer.window.add_dock_widget(
        FinetuneWidget(viewer, segment), name="Correct and fine-tune", area="right"
    )
    viewer.window.add_dock_widget(CompareWidget(viewer), name="Compare", area="right", tabify=True)
    tune.raise_()  # in front of Compare, its tab neighbour
    return viewer
