"""Champion changes without a restart: loaded beside the old one, swapped atomically, rollback within the poll."""

from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient

from replyloop import registry
from replyloop.serving.engine import load_engine
from replyloop.serving.main import create_app
from replyloop.serving.model_store import ModelStore

from .conftest import wait_ready


def test_rollback_to_a_kept_version_is_a_swap_without_loading(served_registry):
    settings = served_registry["settings"]
    v1, v2 = served_registry["versions"]
    loads = []

    def counting_loader(s, version):
        loads.append(version)
        return load_engine(s, version)

    store = ModelStore(settings, loader=counting_loader)
    assert store.refresh() is True and store.current.version == v1
    old = store.current
    registry.promote(settings, v2, reason="test", by="test", force=True)
    try:
        assert store.refresh() is True and store.current.version == v2 and loads == [v1, v2]
        # a request admitted before the swap still runs on its model
        assert old.engine.generate([[{"role": "customer", "text": "hi"}]])[0].tokens > 0
    finally:
        registry.rollback(settings, to=v1, reason="test rollback", by="test", force=True)
    assert store.refresh() is True and store.current is old and loads == [v1, v2]


def test_promotion_and_rollback_go_live_under_traffic(serve_settings, api_key, served_registry):
    settings = serve_settings
    v1, v2 = served_registry["versions"]
    poll = settings.alias_poll_seconds
    statuses, versions, stop = [], set(), threading.Event()
    with TestClient(create_app(settings)) as c:
        c.headers["X-API-Key"] = api_key
        assert wait_ready(c)["model_version"] == v1

        def traffic():
            while not stop.is_set():
                r = c.post("/v1/replies", json={"text": "is my parcel coming today?"})
                statuses.append(r.status_code)
                versions.add(r.json().get("model_version"))

        sender = threading.Thread(target=traffic)
        sender.start()
        try:
            registry.promote(settings, v2, reason="test", by="test", force=True)
            deadline = time.monotonic() + 60  # a first load of v2 converts it: not bounded by the poll
            while c.get("/readyz").json()["model_version"] != v2 and time.monotonic() < deadline:
                time.sleep(poll / 4)
            assert c.get("/readyz").json()["model_version"] == v2
            registry.rollback(settings, to=v1, reason="test rollback", by="test", force=True)
            rolled = time.monotonic()
            while c.get("/readyz").json()["model_version"] != v1 and time.monotonic() - rolled < 10:
                time.sleep(poll / 10)
            live_after = time.monotonic() - rolled
        finally:
            stop.set()
            sender.join()
            if registry.alias_version(settings, "champion") != v1:
                registry.rollback(settings, to=v1, reason="restore", by="test", force=True)
    # v1 stayed loaded: the rollback is one poll away (plus the registry lookup, slow on a loaded machine)
    assert live_after <= 2 * poll + 3.0, f"rollback live after {live_after:.2f}s with polls every {poll}s"
    assert set(statuses) == {200} and versions <= {v1, v2}


def test_load_serves_the_alias_or_says_why(served_registry, settings):
    import pytest

    from replyloop.serving.model_store import NoModelError

    loaded = ModelStore(served_registry["settings"]).load()
    assert loaded.version == served_registry["versions"][0] and isinstance(loaded.generator.reply(["hi"])[0], str)
    with pytest.raises(NoModelError, match="has no @champion version yet"):
        ModelStore(settings).load()
