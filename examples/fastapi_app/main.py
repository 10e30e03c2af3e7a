"""The example app: `uvicorn examples.fastapi_app.main:app --port 8000`."""

from fastapi import FastAPI

import inngest_like.fast_api

from .functions import client, functions

app = FastAPI(title="llm-pipeline example")
inngest_like.fast_api.serve(app, client, functions)


@app.get("/")
async def index() -> dict[str, str]:
    return {"app": client.app_id, "serve": "/api/inngest"}
