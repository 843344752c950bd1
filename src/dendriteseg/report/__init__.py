"""Reports: overlays (PNG), and later figures, meshes and tables."""

from dendriteseg.report.overlay import confusion_rgb, robust_window, write_overlay_files, write_overlays

__all__ = ["confusion_rgb", "robust_window", "write_overlay_files", "write_overlays"]
