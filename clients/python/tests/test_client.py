"""The client against a real warmpool (process runtime, bundled sample app)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from conftest import Warmpool, eventually
from warmpool import Client, Container, WarmpoolError
from warmpool.errors import error_from_answer

GONE = ("stopping", "stopped")


def ts(s: str) -> datetime:
    # RFC 3339 as warmpool writes it; fromisoformat of 3.9/3.10 wants no "Z"
    # and at most 6 fraction digits.
    s = s.replace("Z", "+00:00")
    s = re.sub(r"\.(\d{6})\d+", r".\1", s)
    return datetime.fromisoformat(s)


def stopped(client: Client, cid: str) -> Container:
    return eventually(
        f"{cid} to be stopped",
        lambda: (lambda c: c if c.state == "stopped" else None)(client.container(cid)),
    )


# ------------------------------------------------------------------- claims


def test_claim_answers_a_warm_allocated_container(client: Client) -> None:
    c = client.claim()
    try:
        assert uuid.UUID(c.id)
        assert c.warm is True
        assert c.pool == "default"
        assert c.location == "default"
        expires = ts(c.expires_at)
        now = datetime.now(timezone.utc)
        assert now + timedelta(seconds=3500) < expires <= now + timedelta(seconds=3610)
        view = client.container(c.id)
        assert view.id == c.id
        assert view.state == "allocated"
        assert view.runtime == "process"
        assert view.on_demand is False
        assert view.allocated_at is not None
    finally:
        client.release(c.id)


def test_claim_with_every_field_delivers_its_set_up(server: Warmpool, client: Client, unique: str) -> None:
    metadata = {"user": "u1", "n": [1, 2, {"deep": None}]}
    c = client.claim(
        pool="default",
        location="default",
        max_lifetime_seconds=600,
        idle_timeout_seconds=300,
        text="hello from python",
        env={"GREETING": "hi"},
        secret_env={"API_KEY": "s3cret-" + unique},
        files={"conf/app.json": '{"debug": true}', "raw.txt": "bytes ok".encode()},
        labels={"team": unique, "tier": "free"},
        metadata=metadata,
    )
    try:
        assert c.warm is True
        now = datetime.now(timezone.utc)
        assert now + timedelta(seconds=590) < ts(c.expires_at) <= now + timedelta(seconds=610)

        view = client.container(c.id)
        assert view.labels == {"team": unique, "tier": "free"}
        assert view.metadata == metadata

        # text, through the app's /admin/update-text
        r = client.proxy(c.id, "/")
        assert r.status == 200, r.text
        assert r.text == "hello from python"
        assert r.header("x-container-id") == c.id
        # env and secret env, through the app's bind hook
        env = client.proxy(c.id, "/env").raise_for_status().json()
        assert env["GREETING"] == "hi"
        assert env["API_KEY"] == "s3cret-" + unique
        # files, written by the runtime into the container's work dir
        work = server.data_dir / "containers" / c.id
        assert (work / "conf" / "app.json").read_text() == '{"debug": true}'
        assert (work / "raw.txt").read_text() == "bytes ok"
    finally:
        client.release(c.id)


def test_claim_by_selector_and_preferred(client: Client) -> None:
    c = client.claim(selector="runtime=sample", preferred=["tier=test", "tier=other"])
    try:
        assert c.pool == "default"
        assert c.warm is True
    finally:
        client.release(c.id)
    with pytest.raises(WarmpoolError) as e:
        client.claim(selector="runtime=cobol")
    assert e.value.status == 404
    assert "no-matching-pool" in e.value.type


# ------------------------------------------------------------------- errors


def test_bad_input_raises_with_the_problem_document(client: Client) -> None:
    with pytest.raises(WarmpoolError) as e:
        client.claim(env={"1BAD": "x"})
    err = e.value
    assert err.status == 422
    assert err.title == "Invalid Value"
    assert "1BAD" in err.detail
    assert err.field is not None and err.field.startswith("env")
    assert err.problem["status"] == 422
    assert set(err.problem) >= {"type", "title", "status", "detail"}
    assert "422" in str(err) and "1BAD" in str(err)
    # Nothing was claimed by the refused request.
    assert not [x for x in client.containers(state="allocated") if x.labels.get("bad")]


def test_pool_and_selector_together_are_refused(client: Client) -> None:
    with pytest.raises(WarmpoolError) as e:
        client.claim(pool="default", selector="runtime=sample")
    assert e.value.status == 422
    assert e.value.detail


def test_unknown_container_and_pool_are_404(client: Client) -> None:
    missing = str(uuid.uuid4())
    for call in (
        lambda: client.container(missing),
        lambda: client.release(missing),
        lambda: client.pool("no-such-pool"),
    ):
        with pytest.raises(WarmpoolError) as e:
            call()
        assert e.value.status == 404
        assert e.value.title and e.value.detail


def test_a_client_without_the_token_gets_401(server: Warmpool, client: Client) -> None:
    for anon in (server.client(None), server.client("wrong-token-0123456789abcdef")):
        for call in (anon.claim, anon.pools, anon.containers, lambda: anon.events(wait=0)):
            with pytest.raises(WarmpoolError) as e:
                call()
            assert e.value.status == 401
            assert e.value.title
        # Probes stay open.
        assert anon.healthz() and anon.readyz()
    # The refused claims took nothing from the pool.
    assert client.pools().ready() >= 0


def test_an_error_answer_that_is_not_a_problem_document_still_raises_one() -> None:
    err = error_from_answer(
        502, "Bad Gateway", {"Content-Type": "text/html", "Retry-After": "3"}, b"<h1>oops</h1>"
    )
    assert isinstance(err, WarmpoolError)
    assert err.status == 502
    assert err.title == "Bad Gateway"
    assert err.type == "about:blank"
    assert err.detail == "<h1>oops</h1>"
    assert err.retry_after == 3


# ------------------------------------------------------------ list, release


def test_list_filters_by_label_state_and_pool(client: Client, unique: str) -> None:
    a = client.claim(labels={"team": unique, "tier": "free"})
    b = client.claim(labels={"team": unique, "tier": "pro"})
    try:
        mine = client.containers(label={"team": unique})
        assert sorted(x.id for x in mine) == sorted([a.id, b.id])
        assert all(x.labels["team"] == unique for x in mine)

        free = client.containers(label=f"team={unique},tier!=pro")
        assert [x.id for x in free] == [a.id]
        either = client.containers(label=f"team={unique},tier in (pro, gold)")
        assert [x.id for x in either] == [b.id]

        allocated = {x.id for x in client.containers(state="allocated", pool="default")}
        assert {a.id, b.id} <= allocated
        assert not {a.id, b.id} & {x.id for x in client.containers(state="ready")}
        assert client.containers(pool="no-such-pool") == []
        assert len(client.containers(label={"team": unique}, limit=1)) == 1
    finally:
        client.release(a.id)
        client.release(b.id)


def test_release_stops_the_container(client: Client, unique: str) -> None:
    c = client.claim(labels={"team": unique})
    view = client.release(c.id)
    assert view.id == c.id
    assert view.state in GONE
    # Idempotent.
    assert client.release(c.id).state in GONE
    final = stopped(client, c.id)
    assert final.stop_reason
    assert final.stopped_at
    assert client.containers(label={"team": unique}, state="live") == []
    # The proxy answers 410 Gone, with the reason, as a problem document.
    r = client.proxy(c.id, "/")
    assert r.status == 410
    with pytest.raises(WarmpoolError) as e:
        r.raise_for_status()
    assert e.value.status == 410 and e.value.detail


def test_context_manager_releases_on_exit(client: Client, unique: str) -> None:
    with client.claimed(labels={"team": unique}) as c:
        assert client.container(c.id).state == "allocated"
    assert client.container(c.id).state in GONE


def test_context_manager_releases_when_the_body_raises(client: Client, unique: str) -> None:
    class Boom(Exception):
        pass

    seen = []
    with pytest.raises(Boom):
        with client.claimed(labels={"team": unique}) as c:
            seen.append(c.id)
            assert client.container(c.id).state == "allocated"
            raise Boom()
    assert len(seen) == 1
    assert client.container(seen[0]).state in GONE
    stopped(client, seen[0])


# -------------------------------------------------------- extend, keepalive


def test_extend_and_keepalive(client: Client) -> None:
    with client.claimed(max_lifetime_seconds=60, idle_timeout_seconds=120) as c:
        before = ts(client.container(c.id).expires_at or "")
        after = client.extend(c.id, 30)
        assert ts(after.expires_at or "") == before + timedelta(seconds=30)
        assert ts(client.container(c.id).expires_at or "") == before + timedelta(seconds=30)

        with pytest.raises(WarmpoolError) as e:
            client.extend(c.id, 100_000)
        assert e.value.status == 422
        assert e.value.field == "seconds"

        kept = client.keepalive(c.id)
        assert kept.id == c.id and kept.state == "allocated"
    for call in (lambda: client.extend(c.id, 1), lambda: client.keepalive(c.id)):
        with pytest.raises(WarmpoolError) as e:
            call()
        assert e.value.status == 410


def test_extend_refuses_a_container_not_claimed(client: Client) -> None:
    ready = client.containers(state="ready", limit=1)
    assert ready, "the pool has a ready container"
    with pytest.raises(WarmpoolError) as e:
        client.extend(ready[0].id, 10)
    assert e.value.status == 409


# -------------------------------------------------------------------- proxy


def test_proxy_every_method_and_the_admin_refusal(client: Client) -> None:
    with client.claimed() as c:
        r = client.proxy(c.id, "a/b", method="PUT", query={"x": "1"}, body="hi")
        assert r.ok, r.text
        echo = r.json()
        assert echo["method"] == "PUT"
        assert "/a/b" in echo["path"] or "/a/b" in echo.get("uri", "")
        r = client.proxy(c.id, "/echo", method="POST", json_body={"k": [1, 2]})
        assert r.ok
        assert client.proxy_url(c.id, "/x") == f"{client.base_url}/container/{c.id}/x"

        admin = client.proxy(c.id, "/admin/update-text", method="POST", body="nope")
        assert admin.status == 403
        with pytest.raises(WarmpoolError) as e:
            admin.raise_for_status()
        assert e.value.status == 403
    assert client.proxy(str(uuid.uuid4()), "/").status == 404


# -------------------------------------------------------------------- pools


def test_pools_and_one_pool(client: Client) -> None:
    pools = client.pools()
    default = [p for p in pools.pools if p.pool == "default"]
    assert len(default) == 1
    assert default[0].location == "default"
    assert default[0].target == 3
    assert pools.max_instances > 0
    assert pools.ready("default") >= 1

    detail = client.pool("default")
    assert detail.name == "default"
    assert detail.revision >= 1
    assert detail.rollout.phase in ("progressing", "complete", "failed")
    assert detail.settings
    assert [p.location for p in detail.locations] == ["default"]


# ------------------------------------------------------------------- events


def test_events_iterator_yields_the_claim_event(client: Client) -> None:
    cursor = client.event_cursor()
    c = client.claim()
    try:
        found = None
        for e in client.iter_events(after=cursor, wait=5, timeout=30):
            assert e.seq > cursor
            if e.container_id == c.id and e.to == "allocated":
                found = e
                break
        assert found is not None, "no allocated event for the claim within 30 s"
        assert found.from_state == "ready"
        ts(found.at)
    finally:
        client.release(c.id)


def test_events_page_of_one_container_and_long_poll(client: Client) -> None:
    with client.claimed() as c:
        page = client.events(container=c.id, limit=1000)
        assert page.events and all(e.container_id == c.id for e in page.events)
        assert [e.seq for e in page.events] == sorted(e.seq for e in page.events)
        assert page.next == page.events[-1].seq
        assert "allocated" in [e.to for e in page.events]
        # Nothing newer for this container yet: a short long-poll answers empty
        # with the same cursor.
        empty = client.events(page.next, container=c.id, wait=1)
        assert empty.events == [] and empty.next == page.next
    # Its release comes as events after the cursor.
    later = eventually(
        "the release events",
        lambda: client.events(page.next, container=c.id, wait=5).events or None,
    )
    assert later[0].to in GONE


def test_iterator_with_a_deadline_ends(client: Client) -> None:
    far = client.event_cursor() + 10_000_000
    assert list(client.iter_events(after=far, wait=1, timeout=1.5)) == []
