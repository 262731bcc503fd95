"""/readyz names the models no runner serves; with ``ready_requires_runners`` (``inferq dev``)
it is not ready until one does."""

from __future__ import annotations

from tests.gateway.support import assert_problem, running


async def test_readyz_names_a_model_without_runner_but_stays_ready_by_default(settings) -> None:
    async with running(settings) as svc, svc.client() as c:
        r = await c.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"nats": "ok", "redis": "ok", "store": "ok",
                        "runners": "none for minilm@1"}


async def test_readyz_waits_for_a_runner_when_asked_to(settings) -> None:
    async with running(settings, ready_requires_runners=True) as svc, svc.client() as c:
        body = assert_problem(await c.get("/readyz"), 503, "unavailable")
        assert "minilm@1" in body["detail"]
        await svc.add_runner()
        r = await c.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["runners"] == "ok"
