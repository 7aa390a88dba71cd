"""A round's first move: ingest what is new or changed in the project's image folder (or S3
prefix).

Incremental (``pipeline.ingest``: files unchanged since they were read are not read again), so
it costs a walk and a ``stat`` per file when nothing changed. It runs before a round starts and
again when an interrupted round resumes, so images dropped in meanwhile join the pool. It is
not a recorded step: it has nothing to resume.
"""

from __future__ import annotations

from pipeline.ingest import IngestError, ingest_folder
from pipeline.project.pixels import ingest_keeper
from pipeline.project.project import Project


class EmptyPool(ValueError):
    """Nothing to label: no image was ever ingested, and the image folder gave none."""


def ingest_new(project: Project, *, progress: bool) -> dict:
    """Ingest the image folder's new files; the record says what came in, or why nothing was
    read. Raises ``EmptyPool`` when the pool is still empty afterwards."""
    folder = project.config.images_location
    record: dict = {"folder": str(folder)}
    if not project.config.project.ingest_each_round:
        record["skipped"] = "[project] ingest_each_round = false"
    else:
        try:
            report = ingest_folder(project.store, folder, progress=progress,
                                   keep_pixels=ingest_keeper(project.config,
                                                             project.train_params()))
        except IngestError as err:
            # A pool filled from elsewhere (`labelloop ingest OTHER`) still has work to do.
            record["skipped"] = str(err)
        else:
            # "unchanged": known files not read again ("unread" read as failures to users).
            record.update(added=len(report.added), unchanged=report.unread,
                          quarantined=len(report.quarantined), released=len(report.released))
            if report.pixels_not_kept:
                record["pixels_not_kept"] = report.pixels_not_kept
            if report.moved or report.not_moved:  # files renamed or moved (status warns)
                record.update(moved=len(report.moved), not_moved=len(report.not_moved))
            if report.not_moved:
                record["not_moved_example"] = report.not_moved[0]
            if report.replaced:  # labeled files overwritten with another image (status warns)
                record.update(replaced=len(report.replaced),
                              replaced_example=report.replaced[0])
            if report.hidden_folders:
                record["hidden_folders"] = len(report.hidden_folders)
    if project.store.count_items() == 0:
        why = record.get("skipped", f"no readable image under {folder}")
        raise EmptyPool(f"the pool is empty: {why}; put images in [project] images ({folder}) "
                        f"or run `labelloop ingest FOLDER` on a folder inside it")
    return record
