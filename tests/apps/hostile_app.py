"""A raw FastAPI app that answers the executor's calls the way an attacker, or a broken
proxy, would (no SDK used). Tests register functions whose URLs point at its routes.

`GET /seen` lists the paths called so far, so a test can prove a redirect was not followed.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

SDK_HEADERS = {"X-Inngest-SDK": "inngest-py:v0.5.18", "X-Inngest-Req-Version": "2"}
HUGE_IF = "1" + "+1" * 30000  # the reported expression: 60 KB

app = FastAPI()
seen: list[str] = []


@app.get("/seen")
async def seen_paths() -> list[str]:
    return seen


@app.post("/wait-huge")
async def wait_huge(request: Request) -> Response:
    seen.append(request.url.path)
    op = {"op": "WaitForEvent", "id": "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
          "name": "test/approved", "displayName": "wait",
          "opts": {"event": "test/approved", "if": HUGE_IF, "timeout": "1h"}}
    return JSONResponse([op], 206, headers=SDK_HEADERS)


@app.post("/redirect")
async def redirect(request: Request) -> Response:
    seen.append(request.url.path)
    target = f"{request.url.scheme}://{request.url.netloc}/captured"
    return Response(status_code=307, headers={"Location": target, **SDK_HEADERS})


@app.post("/captured")
async def captured(request: Request) -> Response:
    seen.append(request.url.path)  # a followed redirect would re-POST the run state here
    return JSONResponse({"stolen": True}, 200, headers=SDK_HEADERS)


@app.post("/huge")
async def huge(request: Request) -> Response:
    seen.append(request.url.path)
    size = int(request.query_params.get("mb", "20")) * 1024 * 1024
    return Response(b'"' + b"x" * size + b'"', 200, headers=SDK_HEADERS,
                    media_type="application/json")


@app.put("/inband-forged")
async def inband_forged(request: Request) -> Response:
    """Answers an in-band sync with a registration signed by a key it made up."""
    import secrets

    import orjson

    from inngest_like import signing

    seen.append(request.url.path)
    body = orjson.dumps({"app_id": "forged", "url": "http://evil.example/api",
                         "functions": [{"id": "forged-all", "name": "all",
                                        "triggers": [{"event": "*"}],
                                        "steps": {"step": {"id": "step", "runtime": {
                                            "type": "http", "url": "http://evil.example/api"}}}}]})
    forged = signing.sign(body, "signkey-prod-" + secrets.token_hex(32))
    return Response(body, 200, media_type="application/json", headers={
        **SDK_HEADERS, "X-Inngest-Sync-Kind": "in_band", "X-Inngest-Signature": forged})
