"""Bad input to `POST /e/{key}` and `POST /fn/register` is refused with a 4xx whose JSON error
names the field and the problem. A request wrong as a whole stores nothing; in a batch, the
valid events before the first invalid one are accepted (their ids come back beside the error)
and nothing from the invalid one on. In-process: the API over fakeredis, no worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import httpx
import orjson
import pytest

from executor.api import create_app
from executor.events import Limits
from executor.service import Executor, Settings

FN_ID = "shop-on-order"


def fn_config(fn_id: str = FN_ID, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "id": fn_id,
        "name": "on order",
        "triggers": [{"event": "shop/*"}],
        "steps": {
            "step": {
                "id": "step",
                "name": "step",
                "runtime": {"type": "http", "url": f"http://127.0.0.1:9/api?fnId={fn_id}&stepId=step"},
                "retries": {"attempts": 3},
            }
        },
    }
    config.update(overrides)
    return config


def register_body(functions: list[dict[str, Any]], app_key: str = "appName",
                  app_id: str = "shop") -> dict[str, Any]:
    return {app_key: app_id, "url": "http://127.0.0.1:9/api", "sdk": "py:test", "v": "0.1",
            "functions": functions}


class Api:
    def __init__(self, redis: fakeredis.FakeAsyncRedis, http: httpx.AsyncClient) -> None:
        self.redis = redis
        self.http = http

    async def snapshot(self) -> dict[bytes, Any]:
        """Every key with its full content, so an added zset member or hash field shows."""
        out: dict[bytes, Any] = {}
        for key in await self.redis.keys("*"):
            kind = (await self.redis.type(key)).decode()
            if kind == "string":
                value: Any = await self.redis.get(key)
            elif kind == "hash":
                value = await self.redis.hgetall(key)
            elif kind == "zset":
                value = await self.redis.zrange(key, 0, -1, withscores=True)
            elif kind == "list":
                value = await self.redis.lrange(key, 0, -1)
            elif kind == "set":
                value = await self.redis.smembers(key)
            else:
                value = kind
            out[key] = (kind, value)
        return out

    async def refused(self, body: bytes | Any, *, path: str = "/e/test-key",
                      status: int = 400) -> str:
        """POST `body`, expect `status` with a JSON error, and check nothing was written."""
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        before_size = await self.redis.dbsize()
        before = await self.snapshot()
        answer = await self.http.post(path, content=raw,
                                      headers={"Content-Type": "application/json"})
        assert answer.status_code == status, answer.text
        payload = answer.json()
        assert payload["status"] == status
        assert isinstance(payload["error"], str) and payload["error"]
        assert payload.get("ids", []) == []
        assert await self.redis.dbsize() == before_size
        assert await self.snapshot() == before
        return str(payload["error"])


    async def partly_refused(self, batch: list[Any], accepted: int) -> tuple[str, list[str]]:
        """POST `batch`: expect 400 naming the first invalid event, the ids of the `accepted`
        events before it, those stored (and their runs started), nothing after them."""
        answer = await self.http.post("/e/test-key", content=orjson.dumps(batch),
                                      headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, answer.text
        payload = answer.json()
        assert payload["status"] == 400
        assert isinstance(payload["error"], str) and payload["error"]
        ids = list(payload["ids"])
        assert len(ids) == accepted
        for i, event_id in enumerate(ids):
            found = (await self.http.get(f"/v1/events/{event_id}")).json()["data"]
            assert found["name"] == batch[i]["name"]
            runs = (await self.http.get(f"/v1/events/{event_id}/runs")).json()["data"]
            assert [r["function_id"] for r in runs] == [FN_ID]  # shop/* started its run
        for later in batch[accepted:]:
            if isinstance(later, dict) and isinstance(later.get("name"), str):
                listed = await self.http.get("/v1/events", params={"name": later["name"]})
                assert listed.json()["data"] == [], later
        return str(payload["error"]), ids


async def make_api(settings: Settings) -> AsyncIterator[Api]:
    redis = fakeredis.FakeAsyncRedis()
    executor = Executor(redis, settings)
    await executor.registry.refresh()
    app = create_app(executor, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://executor") as http:
        api = Api(redis, http)
        # a synced function matching shop/*, so a wrongly accepted event would also start a run
        answer = await http.post("/fn/register", json=register_body([fn_config()]))
        assert answer.status_code == 200, answer.text
        # and an event already stored, so the indexes exist before the bad requests
        answer = await http.post("/e/test-key", json={"name": "shop/seed", "data": {}})
        assert answer.status_code == 200, answer.text
        yield api
    await executor.driver.close()
    await redis.aclose()


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async for value in make_api(Settings(run_worker=False)):
        yield value


@pytest.fixture
async def small_api() -> AsyncIterator[Api]:
    async for value in make_api(Settings(run_worker=False, limits=Limits(max_event_bytes=1024))):
        yield value


def ok_event(i: int) -> dict[str, Any]:
    return {"name": f"shop/ordered-{i}", "data": {"order": i}}


# -- events -------------------------------------------------------------------------------

async def test_malformed_json(api: Api) -> None:
    error = await api.refused(b'{"name": "shop/ordered", "data": {')
    assert error.startswith("body:")
    assert "malformed JSON" in error


async def test_body_neither_object_nor_list(api: Api) -> None:
    error = await api.refused(b'"shop/ordered"')
    assert error.startswith("body:")
    assert "event object or an array" in error


async def test_missing_name(api: Api) -> None:
    error = await api.refused({"data": {"order": 1}})
    assert error.startswith("name:")
    assert "required" in error


@pytest.mark.parametrize("name", [42, None, "", "   ", ["shop/ordered"]])
async def test_name_not_a_non_empty_string(api: Api, name: Any) -> None:
    error = await api.refused({"name": name, "data": {}})
    assert error.startswith("name:")
    assert "string" in error


@pytest.mark.parametrize("data", [[1, 2, 3], "a string", 7, True])
async def test_data_not_an_object(api: Api, data: Any) -> None:
    error = await api.refused({"name": "shop/ordered", "data": data})
    assert error.startswith("data:")
    assert "JSON object" in error


async def test_reserved_name(api: Api) -> None:
    error = await api.refused({"name": "inngest/function.failed", "data": {}})
    assert error.startswith("name:")
    assert "reserved" in error
    assert "inngest/" in error


@pytest.mark.parametrize("ts", ["2024-06-01T00:00:00Z", "1718121495000", 1.7181e12, True,
                                {"ms": 1}])
async def test_wrong_ts_type(api: Api, ts: Any) -> None:
    error = await api.refused({"name": "shop/ordered", "data": {}, "ts": ts})
    assert error.startswith("ts:")
    assert "integer" in error


async def test_ts_out_of_range(api: Api) -> None:
    error = await api.refused({"name": "shop/ordered", "data": {}, "ts": 1718121495})  # seconds
    assert error.startswith("ts:")
    assert "1980" in error


async def test_event_over_a_small_limit(small_api: Api) -> None:
    error = await small_api.refused({"name": "shop/ordered", "data": {"blob": "x" * 2000}})
    assert "over the limit of 1024" in error
    assert "bytes" in error


async def test_event_just_under_a_small_limit_is_accepted(small_api: Api) -> None:
    # the limit is not "any data at all": a 900-byte event passes the 1 KiB limit
    answer = await small_api.http.post(
        "/e/test-key", json={"name": "shop/ordered", "data": {"blob": "x" * 900}}
    )
    assert answer.status_code == 200, answer.text


async def test_event_over_the_dev_default_3_mib_limit(api: Api) -> None:
    error = await api.refused({"name": "shop/ordered",
                               "data": {"blob": "x" * (3 * 1024 * 1024)}})
    assert f"over the limit of {3 * 1024 * 1024}" in error


async def test_dev_default_admits_a_batch_of_1_mib_events(api: Api) -> None:
    # the official Python suite's large batch: events of 1 MiB of data each
    batch = [{"name": "shop/large", "data": {"msg": "a" * 1024 * 1024}} for _ in range(3)]
    answer = await api.http.post("/e/test-key", json=batch)
    assert answer.status_code == 200, answer.text[:300]
    assert len(answer.json()["ids"]) == 3


def test_production_default_stays_512_kib() -> None:
    assert Limits.for_mode(production=True).max_event_bytes == 512 * 1024
    assert Limits.for_mode(production=False).max_event_bytes == 3 * 1024 * 1024
    assert Limits.for_mode(production=True, max_event_bytes=1000).max_event_bytes == 1000


async def test_big_event_in_a_batch_names_its_index(small_api: Api) -> None:
    batch = [ok_event(0), ok_event(1), {"name": "shop/big", "data": {"blob": "y" * 5000}}]
    error, _ = await small_api.partly_refused(batch, accepted=2)
    assert "events[2]" in error
    assert "over the limit of 1024" in error


async def test_whole_event_error_in_a_batch_is_prefixed_events_index(small_api: Api) -> None:
    error, _ = await small_api.partly_refused([ok_event(0), "not an object"], accepted=1)
    assert error.startswith("events[1]: "), error


async def test_batch_whose_first_event_is_invalid_stores_nothing(api: Api) -> None:
    error = await api.refused([{"name": ""}, ok_event(1)])
    assert error.startswith("events[0].name:"), error


async def test_single_event_size_error_does_not_start_with_a_bare_colon(small_api: Api) -> None:
    error = await small_api.refused({"name": "shop/big", "data": {"blob": "y" * 5000}})
    assert not error.startswith(":"), error


async def test_too_many_events_in_one_request(api: Api) -> None:
    batch = [{"name": "shop/tiny", "data": {}} for _ in range(5001)]
    error = await api.refused(batch)
    assert "5001 events" in error
    assert "5000" in error


async def test_event_count_limit_boundary() -> None:
    async for small in make_api(Settings(run_worker=False, limits=Limits(max_events=3))):
        error = await small.refused([ok_event(i) for i in range(4)])
        assert "4 events, over the limit of 3" in error
        answer = await small.http.post("/e/test-key", json=[ok_event(i) for i in range(3)])
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["ids"]) == 3


async def test_empty_batch(api: Api) -> None:
    error = await api.refused([])
    assert "no events" in error


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        ({"data": {}}, "name", "required"),
        ({"name": 5, "data": {}}, "name", "string"),
        ({"name": "shop/x", "data": ["list"]}, "data", "JSON object"),
        ({"name": "inngest/x", "data": {}}, "name", "reserved"),
        ({"name": "shop/x", "data": {}, "ts": "now"}, "ts", "integer"),
        ("not an object", "", "JSON object"),
    ],
)
async def test_batch_with_a_late_bad_event_accepts_the_events_before_it(
    api: Api, bad: Any, field: str, words: str
) -> None:
    batch = [ok_event(0), ok_event(1), bad, ok_event(3)]
    error, _ = await api.partly_refused(batch, accepted=2)
    assert error.startswith(f"events[2].{field}:" if field else "events[2]")
    assert words in error


async def test_partial_batch_ids_are_the_seeded_ids_a_valid_retry_gets(api: Api) -> None:
    seed = {"X-Inngest-Event-Id-Seed": "1718121495000,AAECAwQFBgcICQ=="}
    bad = await api.http.post("/e/test-key", json=[ok_event(10), {"name": ""}],
                              headers=seed)
    assert bad.status_code == 400
    good = await api.http.post("/e/test-key", json=[ok_event(10), ok_event(11)],
                               headers=seed)
    assert good.status_code == 200
    assert bad.json()["ids"] == good.json()["ids"][:1]


async def test_valid_batch_ids_in_input_order(api: Api) -> None:
    before = await api.redis.dbsize()
    batch = [
        {"name": "shop/ordered", "data": {"n": 0}},
        {"name": "shop/paid", "data": {"n": 1}, "ts": 1718121495000},
        {"name": "other/thing", "data": {"n": 2}, "id": "my-key", "v": "2024-01"},
    ]
    answer = await api.http.post("/e/test-key", json=batch)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == 200
    ids = body["ids"]
    assert len(ids) == 3 and len(set(ids)) == 3
    for i, event_id in enumerate(ids):
        found = await api.http.get(f"/v1/events/{event_id}")
        assert found.status_code == 200, found.text
        data = found.json()["data"]
        assert data["id"] == event_id
        assert data["name"] == batch[i]["name"]
        assert data["data"] == {"n": i}
    third = (await api.http.get(f"/v1/events/{ids[2]}")).json()["data"]
    assert third["event"]["id"] == "my-key"  # the sender's id is kept for the SDK
    assert third["event"]["v"] == "2024-01"
    second = (await api.http.get(f"/v1/events/{ids[1]}")).json()["data"]
    assert second["event"]["ts"] == 1718121495000
    # shop/* events started a run of the synced function, other/thing did not
    for event_id, expected in zip(ids, (1, 1, 0), strict=True):
        runs = (await api.http.get(f"/v1/events/{event_id}/runs")).json()["data"]
        assert len(runs) == expected
        assert all(r["function_id"] == FN_ID and r["status"] == "Running" for r in runs)
    assert await api.redis.dbsize() > before


async def test_unknown_event_id_is_404(api: Api) -> None:
    answer = await api.http.get("/v1/events/01J000000000000000000NOPE0")
    assert answer.status_code == 404
    assert answer.json()["status"] == 404


# -- function registration ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"triggers": []}, "triggers", "non-empty"),
        ({"triggers": None}, "triggers", "non-empty"),
        ({"triggers": [{"expression": "true"}]}, "triggers[0]", "'event' or 'cron'"),
        ({"steps": {"step": {"id": "step", "runtime": {"type": "http"},
                             "retries": {"attempts": 1}}}},
         "steps.step.runtime.url", "URL"),
        ({"steps": {}}, "steps.step.runtime.url", "URL"),
        ({"steps": {"step": {"id": "step", "runtime": {"type": "http", "url": "http://h/a"},
                             "retries": {"attempts": 50}}}},
         "steps.step.retries.attempts", "0..20"),
        ({"steps": {"step": {"id": "step", "runtime": {"type": "http", "url": "http://h/a"},
                             "retries": {"attempts": "3"}}}},
         "steps.step.retries.attempts", "integer"),
    ],
)
async def test_register_bad_function_config(
    api: Api, overrides: dict[str, Any], field: str, words: str
) -> None:
    body = register_body([fn_config("shop-good"), fn_config("shop-broken", **overrides)])
    error = await api.refused(body, path="/fn/register")
    assert "'shop-broken'" in error
    assert f"{field}:" in error
    assert words in error
    functions = (await api.http.get("/v1/functions")).json()["data"]
    assert [f["id"] for f in functions] == [FN_ID]


async def test_register_without_app_name(api: Api) -> None:
    body = register_body([fn_config("x-fn")])
    del body["appName"]
    error = await api.refused(body, path="/fn/register")
    assert error.startswith("appName:")


async def test_register_malformed_json(api: Api) -> None:
    error = await api.refused(b'{"appName": "shop", ', path="/fn/register")
    assert "malformed JSON" in error


@pytest.mark.parametrize("app_key", ["appName", "appname"])
async def test_register_accepts_both_app_name_spellings(api: Api, app_key: str) -> None:
    body = register_body([fn_config("py-app-fn", triggers=[{"event": "py/run"}])],
                         app_key=app_key, app_id="py-app")
    answer = await api.http.post("/fn/register", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True
    assert answer.json()["app_id"] == "py-app"
    apps = {a["id"]: a for a in (await api.http.get("/v1/apps")).json()["data"]}
    assert apps["py-app"]["functions"] == ["py-app-fn"]
    functions = {f["id"]: f for f in (await api.http.get("/v1/functions")).json()["data"]}
    assert functions["py-app-fn"]["app_id"] == "py-app"
    # and the function is live: its event starts a run
    sent = await api.http.post("/e/test-key", json={"name": "py/run", "data": {}})
    event_id = sent.json()["ids"][0]
    runs = (await api.http.get(f"/v1/events/{event_id}/runs")).json()["data"]
    assert [r["function_id"] for r in runs] == ["py-app-fn"]
