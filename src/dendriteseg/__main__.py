"""``python -m dendriteseg``: the command line (see :mod:`dendriteseg.cli`)."""

from dendriteseg.cli import main

main()
