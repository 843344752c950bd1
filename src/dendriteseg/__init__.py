"""dendriteseg: dendrite segmentation of 3D/4D x-ray CT of solidifying alloys."""

from dendriteseg.heap import advise_huge_pages

__version__ = "0.1.0"

advise_huge_pages()  # before torch is imported: it reads the switch once (see dendriteseg.heap)
