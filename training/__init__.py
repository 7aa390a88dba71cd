"""Train, calibrate, save and run image classifiers for labelloop.

Knows tensors and image files only: never imports ``labeling`` or ``pipeline``. Import from the
modules (``training.train``, ``training.predict``, ...): the package itself imports nothing, so
that ``training.params`` and ``training.images`` stay free of torch for the command line.
"""
