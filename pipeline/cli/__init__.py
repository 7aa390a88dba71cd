"""The ``labelloop`` command line (``app.py``): one module per command group and the helpers they
share (``common.py``). Nothing outside this package imports it."""
