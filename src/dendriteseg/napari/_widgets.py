"""The dock widgets: Segment, Correct and fine-tune, Compare.

Each long job (segmenting, fine-tuning) runs in a napari ``thread_worker``
generator: the library call runs in a thread of its own, reports progress
through a queue that the generator yields from (so the viewer never
freezes), and stops at its next progress report once Cancel is pressed
(:class:`Cancelled` unwinds it: a cancelled segmentation leaves no layer).
Layers are added or changed only in the callbacks, on the viewer's thread.
"""

from __future__ import annotations

import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from dendriteseg.data import UNLABELLED
from dendriteseg.infer.settings import DEFAULT_HYSTERESIS

SHIPPED = ("unet3d_default", "unet2d_default", "fcdense3d_default")
DEFAULT_START = "(default: 2D model for 2D images, else 3D)"
SCRIBBLE_COLOURS = {0: "transparent", 1: "#3b82f6", 2: "#facc15"}  # unlabelled, background, dendrite
DIFFERENCE_COLOURS = {0: "transparent", 1: "#ef4444", 2: "#22c55e"}  # only before, only after


class Cancelled(Exception):
    """Raised in a job's progress callback once Cancel is pressed."""


class Job:
    """A library call run off the viewer's thread: progress through a queue, cancel through an event."""

    def __init__(self, call: Callable[[Callable[[float], None]], Any]):
        self.call = call
        self.cancel = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def report(self, share: float) -> None:
        """Called by the library (in its thread) with the share done; stops the job once cancelled."""
        self._queue.put(float(share))
        if self.cancel.is_set():
            raise Cancelled

    def run(self) -> Iterator[float]:
        """The worker's generator: yields the share done until the call returns or fails."""
        self._queue: queue.Queue = queue.Queue()

        def target() -> None:
            try:
                self.result = self.call(self.report)
            except BaseException as exc:  # noqa: BLE001 - handed to the viewer's thread
                self.error = exc
            finally:
                self._queue.put(None)

        thread = threading.Thread(target=target, name="dendriteseg-job", daemon=True)
        thread.start()
        while True:
            share = self._queue.get()
            if share is None:
                break
            yield share
        thread.join()


def start_job(
    job: Job,
    progress: QProgressBar,
    on_done: Callable[[Any], None],
    on_error: Callable[[BaseException], None],
) -> Any:
    """Run ``job`` in a napari thread worker, driving ``progress``; returns the worker."""
    from napari.qt.threading import thread_worker

    worker = thread_worker(job.run)()
    progress.setRange(0, 1000)
    progress.setValue(0)
    worker.yielded.connect(lambda share: progress.setValue(int(1000 * min(max(share, 0.0), 1.0))))

    def finished() -> None:
        if job.error is not None:
            on_error(job.error)
        else:
            progress.setValue(1000)
            on_done(job.result)

    worker.finished.connect(finished)
    worker.start()
    return worker


def _layers(viewer: Any, kind: str) -> list[str]:
    return [layer.name for layer in viewer.layers if type(layer).__name__.lower() == kind]


class _LayerBox(QComboBox):
    """A combo box of the viewer's layers of one kind, kept up to date."""

    def __init__(self, viewer: Any, kind: str, optional: bool = False):
        super().__init__()
        self.viewer, self.kind, self.optional = viewer, kind, optional
        self.refresh()
        for event in ("inserted", "removed", "reordered"):
            getattr(viewer.layers.events, event).connect(self.refresh)

    def refresh(self, *_: Any) -> None:
        current = self.currentText()
        self.blockSignals(True)
        self.clear()
        self.addItems((["(none)"] if self.optional else []) + _layers(self.viewer, self.kind))
        if current and self.findText(current) >= 0:
            self.setCurrentText(current)
        self.blockSignals(False)

    def layer(self) -> Any:
        name = self.currentText()
        return self.viewer.layers[name] if name and name != "(none)" and name in self.viewer.layers else None


def _model_box(editable: bool = True) -> QComboBox:
    box = QComboBox()
    box.setEditable(editable)
    box.addItems(list(SHIPPED))
    return box


class SegmentWidget(QWidget):
    """Segment the chosen image layer; the labels as a Labels layer, the verdict, slices to label next."""

    def __init__(self, napari_viewer: Any):
        super().__init__()
        self.viewer = napari_viewer
        self.image = _LayerBox(napari_viewer, "image")
        self.model = _model_box()
        self.model.insertItem(0, DEFAULT_START)  # as segment chooses with no model named
        self.model.setCurrentIndex(0)
        browse = QPushButton("File...")
        browse.clicked.connect(self._browse)
        self.scale = QComboBox()
        self.scale.addItems(["auto", "1", "2", "3", "4"])
        self.mask = QComboBox()
        self.mask.addItems(["auto", "none"])
        self.tta = QComboBox()
        self.tta.addItems(["auto", "on", "off"])
        self.tta.setToolTip("average over the four in-plane flips (four passes); auto: small volumes")
        self.edge_rim = QCheckBox("drop a thin rim along the sample's edge")
        self.edge_rim.setChecked(True)
        self.edge_rim.setToolTip("dendrites that reach the edge from inside stay; no effect without a mask")
        self.hysteresis = QDoubleSpinBox()
        self.hysteresis.setRange(0.5, 0.99)
        self.hysteresis.setSingleStep(0.05)
        self.hysteresis.setValue(DEFAULT_HYSTERESIS)
        self.hysteresis.setToolTip("a piece is dendrite only where some of it is this sure (0.5: p > 0.5)")
        self.probabilities = QCheckBox("also show probabilities")
        self.run_button = QPushButton("Segment")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.next_slices = QHBoxLayout()
        form = QFormLayout()
        form.addRow("image", self.image)
        row = QHBoxLayout()
        row.addWidget(self.model)
        row.addWidget(browse)
        form.addRow("model", row)
        form.addRow("scale", self.scale)
        form.addRow("sample mask", self.mask)
        form.addRow("hysteresis", self.hysteresis)
        form.addRow(self.edge_rim)
        form.addRow("flips", self.tta)
        form.addRow(self.probabilities)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.verdict)
        layout.addLayout(self.next_slices)
        layout.addStretch()
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)
        self.job: Job | None = None
        self.worker: Any = None
        self.result: Any = None

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model file", "", "Models (*.safetensors)")
        if path:
            self.model.setCurrentText(path)

    def run(self, model: str | None = None) -> Any:
        """Segment the chosen image with ``model`` (default: the one chosen); returns the worker."""
        from dendriteseg.infer import segment

        layer = self.image.layer()
        if layer is None:
            self.verdict.setText("Open an image first.")
            return None
        model = model or self.model.currentText()
        if model == DEFAULT_START:
            model = None  # segment's default: the 2D model for a 2D image, else the 3D one
        image = layer.data
        options = {
            "scale": self.scale.currentText(),
            "sample_mask": self.mask.currentText(),
            "tta": self.tta.currentText(),
            "hysteresis": float(self.hysteresis.value()),
            "edge_rim": self.edge_rim.isChecked(),
            "probabilities": self.probabilities.isChecked() or None,
        }
        self.job = Job(
            lambda report: segment(
                image, model, progress=lambda done, total: report(done / max(total, 1)), **options
            )
        )
        self._busy(True)
        self.verdict.setText("segmenting ...")
        self.worker = start_job(
            self.job, self.progress, lambda r: self._done(layer.name, model, r), self._failed
        )
        return self.worker

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel.set()

    def _busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _failed(self, error: BaseException) -> None:
        self._busy(False)
        self.progress.setValue(0)
        self.verdict.setText("cancelled" if isinstance(error, Cancelled) else f"error: {error}")

    def _done(self, name: str, model: str, result: Any) -> None:
        self._busy(False)
        self.result = result
        labels_name = f"{name} labels"
        source = self.viewer.layers[name]
        if labels_name in self.viewer.layers:
            self.viewer.layers[labels_name].data = result.labels
        else:
            self.viewer.add_labels(result.labels, name=labels_name, scale=source.scale, opacity=0.5)
        if result.probabilities is not None:
            probs_name = f"{name} probabilities"
            if probs_name in self.viewer.layers:
                self.viewer.layers[probs_name].data = result.probabilities
            else:
                self.viewer.add_image(
                    result.probabilities,
                    name=probs_name,
                    scale=source.scale,
                    colormap="magma",
                    blending="additive",
                    visible=False,
                )
        trust = result.trust
        text = (
            f"{Path(str(model or 'default model')).name}: {100 * result.dendrite_fraction:.2f} % dendrite; "
            f"trust {trust.trust}"
        )
        if trust.reasons:
            text += " (" + "; ".join(trust.reasons) + ")"
        self.verdict.setText(text)
        self._show_next(trust.label_next)

    def _show_next(self, slices: list[int]) -> None:
        while self.next_slices.count():
            item = self.next_slices.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        if not slices or self.result is None or self.result.labels.ndim != 3:
            return
        self.next_slices.addWidget(QLabel("label next:"))
        for z in slices:
            button = QPushButton(f"z {z}")
            button.clicked.connect(lambda _=False, z=z: self.go_to(z))
            self.next_slices.addWidget(button)

    def go_to(self, z: int) -> None:
        """Show slice ``z``."""
        self.viewer.dims.set_point(0, z * float(self.viewer.layers[self.image.currentText()].scale[0]))


class FinetuneWidget(QWidget):
    """Paint scribbles or correct slices, fine-tune on them, save the model, segment again with it."""

    def __init__(self, napari_viewer: Any, segment_widget: SegmentWidget | None = None):
        super().__init__()
        self.viewer = napari_viewer
        self.segment_widget = segment_widget
        self.image = _LayerBox(napari_viewer, "image")
        self.labels = _LayerBox(napari_viewer, "labels")
        self.kind = QComboBox()
        self.kind.addItems(["scribbles (1 background, 2 dendrite)", "corrected slices (0/1)"])
        self.slices = QLineEdit()
        self.slices.setPlaceholderText("slices, e.g. 3,21,40 (corrected slices)")
        self.start = _model_box()
        self.start.insertItem(0, DEFAULT_START)
        self.start.setCurrentIndex(0)
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.05, 600.0)
        self.minutes.setValue(2.0)
        self.minutes.setSuffix(" min")
        self.out = QLineEdit(str(Path(tempfile.gettempdir()) / "dendriteseg_finetuned.safetensors"))
        new_scribbles = QPushButton("New scribbles layer")
        new_scribbles.clicked.connect(lambda: self.new_scribbles())
        self.run_button = QPushButton("Fine-tune")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.again_button = QPushButton("Segment again with it")
        self.again_button.setEnabled(False)
        self.progress = QProgressBar()
        self.result_text = QLabel("")
        self.result_text.setWordWrap(True)
        form = QFormLayout()
        form.addRow("image", self.image)
        form.addRow("labels", self.labels)
        form.addRow("they are", self.kind)
        form.addRow("slices", self.slices)
        form.addRow("start from", self.start)
        form.addRow("budget", self.minutes)
        form.addRow("save model to", self.out)
        layout = QVBoxLayout(self)
        layout.addWidget(new_scribbles)
        layout.addLayout(form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.result_text)
        layout.addWidget(self.again_button)
        layout.addStretch()
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(lambda: self.job and self.job.cancel.set())
        self.again_button.clicked.connect(lambda: self.segment_again())
        self.job: Job | None = None
        self.worker: Any = None
        self.result: Any = None

    def new_scribbles(self) -> Any:
        """A Labels layer named "scribbles" over the image: 0 unlabelled, 1 background, 2 dendrite."""
        layer = self.image.layer()
        if layer is None:
            self.result_text.setText("Open an image first.")
            return None
        shape = layer.data.shape
        scribbles = self.viewer.add_labels(np.zeros(shape, np.uint8), name="scribbles", scale=layer.scale)
        try:  # napari >= 0.5
            from napari.utils.colormaps import DirectLabelColormap

            scribbles.colormap = DirectLabelColormap(color_dict={**SCRIBBLE_COLOURS, None: "transparent"})
        except ImportError:  # pragma: no cover - older napari
            scribbles.color = SCRIBBLE_COLOURS
        scribbles.selected_label = 2
        self.labels.refresh()
        self.labels.setCurrentText("scribbles")
        self.kind.setCurrentIndex(0)
        return scribbles

    def run(self) -> Any:
        """Fine-tune on the chosen labels (the library function ``dendriteseg finetune`` calls)."""
        from dendriteseg.tune.finetune import finetune_on_labels
        from dendriteseg.tune.labels import user_scan

        image, labels = self.image.layer(), self.labels.layer()
        if image is None or labels is None:
            self.result_text.setText("Choose an image and a labels layer.")
            return None
        scribbles = self.kind.currentIndex() == 0
        try:
            slices = [int(s) for s in self.slices.text().replace(" ", "").split(",") if s] or None
            scan = user_scan(
                np.asarray(image.data),
                np.asarray(labels.data),
                scribbles=scribbles,
                slices=None if scribbles else slices,
                name=image.name,
                source=labels.name,
            )
        except Exception as exc:  # noqa: BLE001 - said in the widget, as the command line says it
            self.result_text.setText(f"error: {exc}")
            return None
        out, minutes, start = self.out.text(), self.minutes.value(), self.start.currentText()
        start = None if start == DEFAULT_START else start
        self.job = Job(
            lambda report: finetune_on_labels([scan], out, start=start, minutes=minutes, on_epoch=report)
        )
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.result_text.setText("fine-tuning ...")
        self.worker = start_job(self.job, self.progress, self._done, self._failed)
        return self.worker

    def _failed(self, error: BaseException) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setValue(0)
        self.result_text.setText("cancelled" if isinstance(error, Cancelled) else f"error: {error}")

    def _done(self, result: Any) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.again_button.setEnabled(True)
        self.result = result
        before, after = result.before["iou"], result.after["iou"]
        self.result_text.setText(
            f"validation IoU {before:.3f} before, {after:.3f} after; kept {result.kept}; saved {result.model}"
        )

    def segment_again(self) -> Any:
        """Segment the image again with the fine-tuned model (in the Segment widget)."""
        if self.result is None:
            return None
        widget = self.segment_widget or SegmentWidget(self.viewer)
        self.segment_widget = widget
        widget.image.setCurrentText(self.image.currentText())
        widget.model.setCurrentText(str(self.result.model))
        return widget.run(str(self.result.model))


class CompareWidget(QWidget):
    """Old against new labels: a difference layer, and each one's IoU / BF1 / BDE on the labelled slices."""

    def __init__(self, napari_viewer: Any):
        super().__init__()
        self.viewer = napari_viewer
        self.before = _LayerBox(napari_viewer, "labels")
        self.after = _LayerBox(napari_viewer, "labels")
        self.reference = _LayerBox(napari_viewer, "labels", optional=True)
        self.scribbles = QCheckBox("the reference is scribbles (1 background, 2 dendrite)")
        self.run_button = QPushButton("Compare")
        self.table = QLabel("")
        self.table.setWordWrap(True)
        form = QFormLayout()
        form.addRow("before", self.before)
        form.addRow("after", self.after)
        form.addRow("reference", self.reference)
        form.addRow(self.scribbles)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.table)
        layout.addStretch()
        self.run_button.clicked.connect(lambda: self.compare())

    def compare(self) -> dict[str, dict[str, float]]:
        """Add the difference layer (1 only before, 2 only after); return and show the scores."""
        before, after = self.before.layer(), self.after.layer()
        if before is None or after is None:
            self.table.setText("Choose two labels layers.")
            return {}
        old, new = np.asarray(before.data) > 0, np.asarray(after.data) > 0
        if old.shape != new.shape:
            self.table.setText(f"error: shapes differ ({old.shape} and {new.shape})")
            return {}
        difference = np.where(old & ~new, 1, np.where(new & ~old, 2, 0)).astype(np.uint8)
        name = "difference (red: before only, green: after only)"
        if name in self.viewer.layers:
            self.viewer.layers[name].data = difference
        else:
            layer = self.viewer.add_labels(difference, name=name, scale=after.scale)
            try:
                from napari.utils.colormaps import DirectLabelColormap

                layer.colormap = DirectLabelColormap(color_dict={**DIFFERENCE_COLOURS, None: "transparent"})
            except ImportError:  # pragma: no cover - older napari
                layer.color = DIFFERENCE_COLOURS
        scores = self._scores(old, new)
        changed = int((difference > 0).sum())
        lines = [f"{changed} voxels changed ({100 * changed / max(old.size, 1):.2f} %)"]
        for which, s in scores.items():
            lines.append(f"{which}: IoU {s['iou']:.3f}, BF1 {s['bf1']:.3f}, BDE {s['bde']:.2f} px")
        self.table.setText("\n".join(lines))
        return scores

    def _scores(self, old: np.ndarray, new: np.ndarray) -> dict[str, dict[str, float]]:
        from dendriteseg.metrics import score_labelled

        reference = self.reference.layer()
        if reference is None:
            return {}
        truth = np.asarray(reference.data).astype(np.uint8)
        if self.scribbles.isChecked():
            truth = np.where(truth == 0, UNLABELLED, truth - 1).astype(np.uint8)
        else:
            labelled = truth.reshape(truth.shape[0], -1).any(axis=1) if truth.ndim == 3 else None
            truth = truth.copy()
            if labelled is not None and labelled.any():  # corrected slices: the others are unlabelled
                truth[~labelled] = UNLABELLED
        as3d = (lambda a: a[None]) if truth.ndim == 2 else (lambda a: a)  # noqa: E731
        out = {}
        for which, labels in (("before", old), ("after", new)):
            e = score_labelled(as3d(labels.astype(np.uint8)), as3d(truth))
            out[which] = {"iou": e.iou, "bf1": e.bf1, "bde": e.bde}
        return out
