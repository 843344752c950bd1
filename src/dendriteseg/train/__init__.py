"""Training: config, fit loop, losses, and the composition root ``train``."""

from dendriteseg.train.config import TrainConfig, load_config, save_config
from dendriteseg.train.fit import fit, segmentation_loss, validate
from dendriteseg.train.run import train

__all__ = ["TrainConfig", "fit", "load_config", "save_config", "segmentation_loss", "train", "validate"]
