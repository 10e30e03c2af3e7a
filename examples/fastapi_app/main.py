"""The example app: `uvicorn examples.fastapi_app.main:app --port 8000`."""

from fastapi import FastAPI

import inngest_like.fast_api

from .functions import client, functions
from .providers import travel

app = FastAPI(title="llm-pipeline example")
inngest_like.fast_api.serve(app, client, functions)


@app.get("/")
async def index() -> dict[str, str]:
    return {"app": client.app_id, "serve": "/api/inngest"}


@app.api_route("/approve/{request_id}", methods=["GET", "POST"])
async def approve(request_id: str, approved: bool = True, by: str = "manager") -> dict[str, object]:
    """The approver's link: sends `approval/decided`, which resumes the waiting run."""
    ids = await client.send(inngest_like.Event(
        name="approval/decided", data={"request_id": request_id, "approved": approved, "by": by}))
    return {"sent": ids}


@app.get("/travel/log")
async def travel_log() -> dict[str, object]:
    return {"log": travel.log, "bookings": travel.bookings}
