"""Training: config, fit loop, losses, and the composition root ``train``."""

from dendriteseg.train.config import TrainConfig, load_config, save_config
from dendriteseg.train.fit import fit, predict_labels, segmentation_loss
from dendriteseg.train.run import train

__all__ = ["TrainConfig", "fit", "load_config", "predict_labels", "save_config", "segmentation_loss", "train"]
