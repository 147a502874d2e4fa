"""``python -m drgrade``: the same entry point as the ``drgrade`` command."""

from drgrade.cli import main

main()
