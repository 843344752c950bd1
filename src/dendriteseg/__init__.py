"""dendriteseg: dendrite segmentation of 3D/4D x-ray CT of solidifying alloys."""

__version__ = "0.1.0"
