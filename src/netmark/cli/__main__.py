"""``python -m netmark.cli``: the ``netmark`` command."""

from netmark.cli import main

main()
