"""The synchronous client: the standard library's ``http.client``, one
connection per request (so one ``Client`` may be shared between threads)."""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import time
from typing import (
    Any,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)
from urllib.parse import quote, urlencode, urlsplit

from . import __version__
from .errors import WarmpoolError, error_from_answer
from .models import (
    Claim,
    Container,
    Event,
    EventPage,
    PoolDetail,
    PoolList,
    ProxyResponse,
)

__all__ = ["Client", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8787"

#: Longest ``wait`` the server takes on ``GET /v1/events``.
MAX_EVENTS_WAIT = 60

_Answer = Tuple[int, str, Dict[str, str], bytes]
_NO_BODY = object()


def _label_selector(label: Union[str, Mapping[str, str]]) -> str:
    if isinstance(label, str):
        return label
    return ",".join(f"{k}={v}" for k, v in label.items())


def _text_files(files: Mapping[str, Union[str, bytes]]) -> Dict[str, str]:
    out = {}
    for path, content in files.items():
        if isinstance(content, (bytes, bytearray)):
            # The API takes UTF-8 text only: fail here, with the path, rather
            # than send something else.
            content = bytes(content).decode("utf-8")
        out[path] = content
    return out


class Client:
    """A client of one warmpool.

    ``base_url`` is where warmpool listens (``http://127.0.0.1:8787`` by
    default; a path prefix is kept). ``token`` is sent as ``Authorization:
    Bearer`` (needed when warmpool has ``WARMPOOL_API_TOKEN`` set).
    ``timeout`` is the socket timeout of each request, in seconds; a claim may
    wait for an on-demand start (``WARMPOOL_CLAIM_TIMEOUT_SECONDS``, 30 s by
    default), so keep it above that.

    Every error answer raises :class:`~warmpool.WarmpoolError`, with the
    problem document.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: Optional[str] = None,
        *,
        timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")

    @classmethod
    def from_env(cls, *, timeout: float = 60.0) -> "Client":
        """A client set up as the ``warmpool`` CLI is: ``WARMPOOL_URL`` (default
        ``http://127.0.0.1:8787``) and the first token of ``WARMPOOL_API_TOKEN``."""
        tokens = [t.strip() for t in os.environ.get("WARMPOOL_API_TOKEN", "").split(",")]
        tokens = [t for t in tokens if t]
        return cls(
            os.environ.get("WARMPOOL_URL") or DEFAULT_URL,
            tokens[0] if tokens else None,
            timeout=timeout,
        )

    def __repr__(self) -> str:
        token = ", token=<redacted>" if self.token else ""
        return f"Client({self.base_url!r}{token})"

    # ------------------------------------------------------------------ HTTP

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Any]] = None,
        body: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> Tuple[str, _Answer]:
        target = self._prefix + path
        if query:
            q = {k: v for k, v in query.items() if v is not None}
            if q:
                target += "?" + urlencode(q, quote_via=quote)
        h = {
            "User-Agent": f"warmpool-python/{__version__}",
            "Accept": "application/json, application/problem+json",
        }
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if headers:
            # The caller's own headers win (an Authorization of the app's own,
            # for a proxied request, say).
            lower = {k.lower() for k in headers}
            h = {k: v for k, v in h.items() if k.lower() not in lower}
            h.update(headers)
        conn_cls = (
            http.client.HTTPSConnection
            if self._scheme == "https"
            else http.client.HTTPConnection
        )
        conn = conn_cls(self._netloc, timeout=self.timeout if timeout is None else timeout)
        try:
            conn.request(method, target, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            answer = (resp.status, resp.reason, dict(resp.getheaders()), data)
        finally:
            conn.close()
        return self.base_url + path, answer

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Any]] = None,
        json_body: Any = _NO_BODY,
        timeout: Optional[float] = None,
    ) -> Any:
        body = None
        headers = {}
        if json_body is not _NO_BODY:
            body = json.dumps(json_body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        url, (status, reason, rh, data) = self._send(
            method, path, query=query, body=body, headers=headers, timeout=timeout
        )
        if not 200 <= status < 300:
            raise error_from_answer(status, reason, rh, data, method=method, url=url)
        return json.loads(data) if data else None

    @staticmethod
    def _id(container_id: str) -> str:
        return quote(container_id, safe="")

    # ---------------------------------------------------------------- claims

    def claim(
        self,
        *,
        pool: Optional[str] = None,
        location: Optional[str] = None,
        max_lifetime_seconds: Optional[int] = None,
        idle_timeout_seconds: Optional[int] = None,
        text: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        secret_env: Optional[Mapping[str, str]] = None,
        files: Optional[Mapping[str, Union[str, bytes]]] = None,
        labels: Optional[Mapping[str, str]] = None,
        metadata: Any = None,
        selector: Optional[str] = None,
        preferred: Optional[Sequence[str]] = None,
        timeout: Optional[float] = None,
    ) -> Claim:
        """Claims a ready container (``POST /container``).

        Every argument is optional and maps to the body field of the same
        meaning: ``pool`` (or ``selector``, with ``preferred`` selectors tried
        first, to pick pools by their labels), ``location``,
        ``max_lifetime_seconds`` (``maxLifetimeInSeconds``),
        ``idle_timeout_seconds`` (``idleTimeoutInSeconds``), ``text``, ``env``,
        ``secret_env`` (``secretEnv``, never persisted by warmpool), ``files``
        (relative path to UTF-8 text), ``labels`` and ``metadata`` (any JSON).
        Set-up is delivered before the answer; a container that does not take
        it is released and the claim fails with 502 ``setup-failed``.
        """
        body: Dict[str, Any] = {}
        for key, value in (
            ("pool", pool),
            ("location", location),
            ("maxLifetimeInSeconds", max_lifetime_seconds),
            ("idleTimeoutInSeconds", idle_timeout_seconds),
            ("text", text),
            ("env", None if env is None else dict(env)),
            ("secretEnv", None if secret_env is None else dict(secret_env)),
            ("files", None if files is None else _text_files(files)),
            ("labels", None if labels is None else dict(labels)),
            ("metadata", metadata),
            ("selector", selector),
            ("preferred", None if preferred is None else list(preferred)),
        ):
            if value is not None:
                body[key] = value
        return Claim.from_json(self._call("POST", "/container", json_body=body, timeout=timeout))

    @contextlib.contextmanager
    def claimed(self, **claim_args: Any) -> Iterator[Claim]:
        """Claims on enter (with :meth:`claim`'s arguments) and releases on
        exit, also when the block raises (then the block's exception is the one
        that propagates, whatever the release does)."""
        c = self.claim(**claim_args)
        try:
            yield c
        except BaseException:
            with contextlib.suppress(Exception):
                self.release(c.id)
            raise
        try:
            self.release(c.id)
        except WarmpoolError as e:
            # Already gone past its tombstone: released all the same.
            if e.status != 404:
                raise

    # ------------------------------------------------------------ containers

    def containers(
        self,
        *,
        state: Optional[str] = None,
        location: Optional[str] = None,
        pool: Optional[str] = None,
        label: Union[str, Mapping[str, str], None] = None,
        limit: Optional[int] = None,
    ) -> List[Container]:
        """Lists containers (``GET /v1/containers``). ``state`` is one of
        starting, ready, allocated, stopping, stopped, failed, or ``live``
        (every state but stopped); ``label`` is a Kubernetes label selector
        (``"team=a,tier!=free"``) or a dict of labels that must all match."""
        d = self._call(
            "GET",
            "/v1/containers",
            query={
                "state": state,
                "location": location,
                "pool": pool,
                "label": None if label is None else _label_selector(label),
                "limit": limit,
            },
        )
        return [Container.from_json(c) for c in d.get("containers") or []]

    def container(self, container_id: str) -> Container:
        """One container (``GET /v1/containers/{id}``)."""
        return Container.from_json(self._call("GET", f"/v1/containers/{self._id(container_id)}"))

    def release(self, container_id: str) -> Container:
        """Stops and releases a container early (``DELETE /v1/containers/{id}``;
        idempotent). Answers its view."""
        return Container.from_json(self._call("DELETE", f"/v1/containers/{self._id(container_id)}"))

    def extend(self, container_id: str, seconds: int) -> Container:
        """Moves a claimed container's expiry ``seconds`` later
        (``POST /v1/containers/{id}/extend``); 422 past the pool's bound."""
        return Container.from_json(
            self._call(
                "POST",
                f"/v1/containers/{self._id(container_id)}/extend",
                json_body={"seconds": seconds},
            )
        )

    def keepalive(self, container_id: str) -> Container:
        """Resets a claimed container's idle timer
        (``POST /v1/containers/{id}/keepalive``)."""
        return Container.from_json(
            self._call("POST", f"/v1/containers/{self._id(container_id)}/keepalive")
        )

    # ---------------------------------------------------------------- proxy

    def proxy_url(self, container_id: str, path: str = "/") -> str:
        """The URL of ``path`` in a container, through warmpool's proxy."""
        return f"{self.base_url}/container/{self._id(container_id)}/{path.lstrip('/')}"

    def proxy(
        self,
        container_id: str,
        path: str = "/",
        *,
        method: str = "GET",
        query: Optional[Mapping[str, Any]] = None,
        body: Union[bytes, str, None] = None,
        json_body: Any = _NO_BODY,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> ProxyResponse:
        """Sends a request to a container through warmpool's proxy
        (``ANY /container/{id}/{path}``) and returns its answer whatever the
        status: the app's own, or warmpool's problem document (403 for
        ``/admin``, 404 unknown id, 410 gone, 502, 504). Call
        ``raise_for_status()`` on it to raise those as :class:`WarmpoolError`.

        warmpool strips its own token before forwarding, so the client's token
        never reaches the app."""
        h = dict(headers or {})
        data: Optional[bytes]
        if json_body is not _NO_BODY:
            data = json.dumps(json_body).encode("utf-8")
            if not any(k.lower() == "content-type" for k in h):
                h["Content-Type"] = "application/json"
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = body
        if not any(k.lower() == "accept" for k in h):
            h["Accept"] = "*/*"
        _, (status, reason, rh, payload) = self._send(
            method.upper(),
            f"/container/{self._id(container_id)}/{path.lstrip('/')}",
            query=query,
            body=data,
            headers=h,
            timeout=timeout,
        )
        return ProxyResponse(status=status, reason=reason, headers=rh, body=payload)

    # ---------------------------------------------------------------- pools

    def pools(self) -> PoolList:
        """Every pool key and its numbers (``GET /v1/pools``)."""
        return PoolList.from_json(self._call("GET", "/v1/pools"))

    def pool(self, name: str) -> PoolDetail:
        """One pool: settings, revision, rollout, locations, recent events
        (``GET /v1/pools/{pool}``)."""
        return PoolDetail.from_json(self._call("GET", f"/v1/pools/{quote(name, safe='')}"))

    def wait_ready(self, ready: int = 1, *, pool: Optional[str] = None, timeout: float = 60.0) -> PoolList:
        """Polls ``GET /v1/pools`` until at least ``ready`` containers are ready
        (in ``pool``, or across pools); raises ``TimeoutError`` after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            pools = self.pools()
            if pools.ready(pool) >= ready:
                return pools
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{pools.ready(pool)} of {ready} containers ready after {timeout}s"
                )
            time.sleep(0.05)

    # --------------------------------------------------------------- events

    def events(
        self,
        after: int = 0,
        *,
        limit: Optional[int] = None,
        container: Optional[str] = None,
        wait: Optional[int] = None,
    ) -> EventPage:
        """One page of lifecycle events, oldest first, after sequence number
        ``after`` (``GET /v1/events``). ``limit`` is 1 to 1000 (default 100);
        ``container`` keeps one container's events; ``wait`` (0 to 60) holds an
        empty answer until an event comes. Pass the page's ``next`` as
        ``after`` to go on."""
        timeout = None if not wait else max(self.timeout, wait + 10.0)
        return EventPage.from_json(
            self._call(
                "GET",
                "/v1/events",
                query={"after": after, "limit": limit, "container": container, "wait": wait},
                timeout=timeout,
            )
        )

    def event_cursor(self) -> int:
        """The sequence number of the latest event: pass it as ``after`` to see
        only the events from now on. (The API has no way to ask for the tail,
        so this pages through the events, 1000 at a time.)"""
        after = 0
        while True:
            page = self.events(after, limit=1000)
            if not page.events:
                return page.next
            after = page.next

    def iter_events(
        self,
        after: int = 0,
        *,
        container: Optional[str] = None,
        wait: int = 25,
        limit: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> Iterator[Event]:
        """Yields events as they come, long-polling ``GET /v1/events`` with
        ``wait`` seconds per request, from sequence number ``after``
        (``event_cursor()`` for "from now on"). Never ends unless ``timeout``
        seconds are given: then it stops once they have passed. To resume
        after breaking out, pass the last event's ``seq`` as ``after``."""
        if not 1 <= wait <= MAX_EVENTS_WAIT:
            raise ValueError(f"wait must be 1 to {MAX_EVENTS_WAIT} seconds, got {wait}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            w = wait
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                w = max(0, min(wait, math.ceil(remaining)))
            page = self.events(after, limit=limit, container=container, wait=w)
            for e in page.events:
                yield e
            after = page.next

    # --------------------------------------------------------------- health

    def healthz(self) -> bool:
        """Whether warmpool's process is up (``GET /healthz``)."""
        return self._probe("/healthz")

    def readyz(self) -> bool:
        """Whether its store is open and the reconciler has run (``GET /readyz``)."""
        return self._probe("/readyz")

    def _probe(self, path: str) -> bool:
        _, (status, _, _, _) = self._send("GET", path)
        return status == 200
