"""``python -m pipeline.cli``: the same as the ``labelloop`` command."""

from pipeline.cli.app import main

main()
