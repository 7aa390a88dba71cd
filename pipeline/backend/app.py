"""The HTTP side of ``labelloop serve``: FastAPI routes over ``pipeline.backend.service``.

FastAPI (on Starlette, served by uvicorn) because it is a maintained ASGI framework that MLflow
already installs, runs the blocking prediction in a thread pool while ``/health`` stays
answerable, and ships a test client. Bodies are parsed here so that a malformed one gets a 400
with a reason, never a 500 or a crash.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from pipeline.backend.service import Backend, BadRequest
from pipeline.registry.mlflow_store import RegistryError
from training.checkpoint import CheckpointError

log = logging.getLogger("labelloop.serve")


def make_app(backend: Backend) -> FastAPI:
    """The ASGI app serving ``backend``."""
    app = FastAPI(title="labelloop model backend", docs_url=None, redoc_url=None,
                  openapi_url=None)

    async def answer(call, request: Request | None = None) -> JSONResponse:
        """``call(body)`` in the thread pool, its result as JSON; refusals as 400s."""
        try:
            body = None
            if request is not None:
                try:
                    body = json.loads(await request.body() or b"null")
                except ValueError as err:
                    raise BadRequest(f"the body is not JSON ({err})") from None
                except RecursionError:  # nested thousands deep: a bad request, not a bug
                    raise BadRequest("the body is nested too deeply") from None
            result = await run_in_threadpool(call, body)
        except BadRequest as err:
            log.warning("refused: %s", err)
            return JSONResponse({"error": str(err)}, status_code=400)
        except RegistryError as err:
            log.error("model registry: %s", err)
            return JSONResponse({"error": f"model registry: {err}"}, status_code=503)
        except CheckpointError as err:
            # The champion's file damaged since serve loaded another: a reason, not a 500.
            log.error("champion: %s", err)
            return JSONResponse({"error": f"{err}; `labelloop models rollback` makes another "
                                          "version the champion"}, status_code=503)
        return JSONResponse(result)

    @app.get("/health")
    @app.get("/")
    async def health() -> JSONResponse:
        return await answer(lambda _: backend.health())

    @app.post("/setup")
    async def setup(request: Request) -> JSONResponse:
        return await answer(backend.setup, request)

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        return await answer(backend.predict, request)

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        return await answer(backend.webhook, request)

    @app.get("/versions")
    async def versions() -> JSONResponse:
        return await answer(lambda _: backend.versions())

    return app
