"""Run a push in its own process, pausing after the first batch lands, so a test can kill it
there (SIGKILL: no clean-up runs). Not a test module.

Usage: python push_worker.py URL STORE_DB PROJECT_ID PROJECT_TITLE IMAGES_DIR BATCH_SIZE
The API key comes from LABEL_STUDIO_API_KEY (never on the command line).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from labeling.store import LabelStore
from labeling.studio.connection import connect
from labeling.studio.project import ImageSource, StudioProject
from labeling.studio.push import PushItem, push_tasks

CLASSES = ("cat", "dog", "bird")


def main() -> None:
    url, db, project_id, title, images_dir, batch = sys.argv[1:7]
    studio = connect(url, os.environ["LABEL_STUDIO_API_KEY"])
    store = LabelStore(db)
    project = StudioProject(int(project_id), title, CLASSES, ImageSource.local(Path(images_dir)))
    items = [PushItem(i.key, i.path, "dog", 0.5) for i in store.items()]

    def landed(sent: int, total: int) -> None:
        print(f"landed {sent}/{total}", flush=True)
        time.sleep(120)  # the test kills us here

    push_tasks(studio, store, project, items, model_version="m1", batch_size=int(batch),
               progress=landed)


if __name__ == "__main__":
    main()
