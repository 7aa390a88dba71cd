"""Probe mode in a round (``[training] mode = "probe"``): the train and predict steps go
through the workspace's embedding cache (``training.probe``), keyed by item key and backbone,
so an image is decoded once per backbone and a round that only retrains the head reads none.
Past ``finetune_after`` training labels the loop fine-tunes instead."""

from __future__ import annotations

from dataclasses import replace

from pipeline.compute.engine import Engine
from pipeline.project.project import Project
from training.embedding_cache import EmbeddingCache
from training.params import TrainParams
from training.predict import Predictions
from training.trained import TrainedModel


def round_params(project: Project, n_train: int) -> TrainParams:
    """The training parameters for a round with ``n_train`` labels: probe until
    ``finetune_after`` (if set), fine-tune from there."""
    params = project.train_params()
    after = project.config.training.finetune_after
    if params.mode == "probe" and after and n_train >= after:
        return replace(params, mode="finetune")
    return params


def cache_for(project: Project, params: TrainParams) -> EmbeddingCache:
    from training.probe import backbone_id

    return EmbeddingCache(project.embeddings_dir / backbone_id(params))


def model_cache(project: Project, model: TrainedModel) -> EmbeddingCache:
    """The cache of the backbone ``model`` holds (recorded at training), not of what its
    weights file holds now."""
    from training.probe import model_backbone_id

    return EmbeddingCache(project.embeddings_dir / model_backbone_id(model))


def train_probe(project: Project, paths, keys, labels, params: TrainParams, *,
                progress: bool) -> TrainedModel:
    from training.probe import train_probe as fit

    return fit(paths, keys, labels, project.classes, params, cache_for(project, params),
               progress=progress)


def predict_probe(project: Project, model: TrainedModel, paths, keys, *,
                  progress: bool, engine: Engine | None = None) -> Predictions:
    """Through the cache; the items it lacks are embedded by ``engine`` (e.g. Ray's), or
    here."""
    from training.probe import predict_cached

    def on_engine(m, todo_paths, todo_keys):
        return engine.predict(m, todo_paths, todo_keys, embeddings=True, progress=progress)

    return predict_cached(model, paths, keys, model_cache(project, model),
                          progress=progress, predict_files=on_engine if engine else None)


def backbone_embeddings(project: Project, paths, keys, *, progress: bool):
    """[N, D] embeddings of the configured backbone (its pretrained weights, no head) for the
    items ``keys``, through the workspace's cache: the cold start's typical picks use them,
    and a probe round after it finds them already computed."""
    from training.probe import backbone, embed

    params = project.train_params()
    model = backbone(params, len(project.classes))
    return embed(model, paths, keys, cache_for(project, params), progress=progress)
