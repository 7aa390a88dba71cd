"""labelloop's loop: the rooms that use both ``labeling`` and ``training``.

- ``project/``: a project on disk: config, workspace, the ``Project`` object, lock, Label
  Studio settings. It imports no step.
- ``registry/``: model versions in MLflow, the store probes, the promotion log.
- ``round/``: the step table and one module per step; steps take a ``Project`` and return
  their record.
- ``cli/``: the ``labelloop`` command line; nothing outside it imports it.
- the modules beside them (ingest, datasets, export, report, status, simulate, quickstart,
  tuning, loop, tasks) are the jobs the commands and steps call.
"""
