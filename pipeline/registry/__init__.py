"""Model versions: the MLflow registry (``registry.py``), its store probes
(``mlflow_store.py``) and the promotion log that makes promotions crash-safe
(``promotion_log.py``)."""
