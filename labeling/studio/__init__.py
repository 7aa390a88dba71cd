"""Label Studio integration: the embedded server, projects, pushing tasks, syncing annotations.

Everything here talks to a real Label Studio over HTTP through ``label-studio-sdk``, exactly as a
user's own deployment is reached. Modules, one idea each:

- ``errors``: the exceptions (their messages never hold the API key);
- ``connection``: ``connect(url, api_key)`` -> a checked ``Studio`` client;
- ``server``: start, stop and inspect the embedded local server;
- ``project``: the labeling config, create-or-reuse a project, image URLs and local storage;
- ``remote``: paged, read-only listings of a project's tasks;
- ``push``: tasks with pre-annotations, idempotent; new predictions for pending tasks;
- ``consensus`` and ``sync``: annotations back into the label store as human labels;
- ``annotator_sim``: a simulated annotator answering from ground truth.

Nothing is imported or contacted at import time.
"""
