"""The round's steps for detection projects (``[project] task = "detection"``): train and
promote a detector, predict the pool's boxes, accept whole images at a bound on the share that
are not right, and choose the images people see. Sync and push are the classification ones,
through the task type (``labeling.tasks.detection``); ``pipeline.round.steps`` binds them."""
