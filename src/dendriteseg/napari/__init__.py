"""The napari plugin: open scans, segment them, correct a few slices, fine-tune, segment again.

Installed with ``pip install 'dendriteseg[napari]'``; napari finds it through
``napari.yaml`` (an npe2 manifest, entry point group ``napari.manifest``).
The widgets hold no logic of their own: they call :func:`dendriteseg.infer.segment`,
:func:`dendriteseg.tune.finetune.finetune_on_labels` and the metrics, in worker
threads that report progress and can be cancelled; layers change only in the
viewer's thread. ``dendriteseg view IMAGE`` opens a viewer with the widgets docked.
"""
