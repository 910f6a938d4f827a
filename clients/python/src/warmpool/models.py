"""Typed views of warmpool's answers (the schemas of docs/openapi.json).

Each model is a frozen dataclass built by ``from_json`` from the decoded JSON
answer. Fields the server adds later are ignored, never an error; every model
also keeps the answer it was built from in ``raw``, so nothing is lost.
Timestamps stay RFC 3339 strings, as the API sends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

__all__ = [
    "Claim",
    "Container",
    "Event",
    "EventPage",
    "PoolStats",
    "PoolList",
    "PoolEvent",
    "Rollout",
    "PoolDetail",
    "ProxyResponse",
]


def _str_map(v: Any) -> Dict[str, str]:
    return {str(k): str(x) for k, x in (v or {}).items()}


@dataclass(frozen=True)
class Claim:
    """Answer of ``POST /container``: the claimed container."""

    id: str
    pool: str
    location: str
    expires_at: str
    warm: bool
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Claim":
        return cls(
            id=d["id"],
            pool=d["pool"],
            location=d["location"],
            expires_at=d["expiresAt"],
            warm=bool(d["warm"]),
            raw=d,
        )


@dataclass(frozen=True)
class Container:
    """One container as the API shows it (``ContainerView``)."""

    id: str
    pool: str
    location: str
    state: str
    runtime: str
    on_demand: bool
    created_at: str
    revision: int = 0
    address: Optional[str] = None
    ready_at: Optional[str] = None
    allocated_at: Optional[str] = None
    expires_at: Optional[str] = None
    stopped_at: Optional[str] = None
    stop_reason: Optional[str] = None
    exit_code: Optional[int] = None
    runtime_handle: Optional[str] = None
    labels: Dict[str, str] = field(default_factory=dict)
    metadata: Any = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Container":
        return cls(
            id=d["id"],
            pool=d["pool"],
            location=d["location"],
            state=d["state"],
            runtime=d["runtime"],
            on_demand=bool(d["onDemand"]),
            created_at=d["createdAt"],
            revision=int(d.get("revision") or 0),
            address=d.get("address"),
            ready_at=d.get("readyAt"),
            allocated_at=d.get("allocatedAt"),
            expires_at=d.get("expiresAt"),
            stopped_at=d.get("stoppedAt"),
            stop_reason=d.get("stopReason"),
            exit_code=d.get("exitCode"),
            runtime_handle=d.get("runtimeHandle"),
            labels=_str_map(d.get("labels")),
            metadata=d.get("metadata"),
            raw=d,
        )


@dataclass(frozen=True)
class Event:
    """A container's state change (``EventView``): ``from_state`` to ``to``."""

    seq: int
    at: str
    container_id: str
    to: str
    from_state: Optional[str] = None
    reason: Optional[str] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Event":
        return cls(
            seq=int(d["seq"]),
            at=d["at"],
            container_id=d["containerId"],
            to=d["to"],
            from_state=d.get("from"),
            reason=d.get("reason"),
            raw=d,
        )


@dataclass(frozen=True)
class EventPage:
    """A page of events (``EventList``); pass ``next`` as ``after`` for the next."""

    events: List[Event]
    next: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "EventPage":
        return cls(
            events=[Event.from_json(e) for e in d.get("events") or []],
            next=int(d["next"]),
        )


@dataclass(frozen=True)
class PoolStats:
    """One pool key (pool and location) and its numbers (``PoolView``)."""

    pool: str
    location: str
    target: int
    ready: int
    starting: int
    allocated: int
    stopping: int
    failed: int
    hits: int
    misses: int
    failed_starts: int
    desired: Optional[int] = None
    reason: Optional[str] = None
    revision: int = 0
    last_error: Optional[str] = None
    last_error_at: Optional[str] = None
    pull: Optional["PullInfo"] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "PoolStats":
        return cls(
            pool=d["pool"],
            location=d["location"],
            target=int(d["target"]),
            ready=int(d["ready"]),
            starting=int(d["starting"]),
            allocated=int(d["allocated"]),
            stopping=int(d["stopping"]),
            failed=int(d["failed"]),
            hits=int(d["hits"]),
            misses=int(d["misses"]),
            failed_starts=int(d["failedStarts"]),
            desired=d.get("desired"),
            reason=d.get("reason"),
            revision=int(d.get("revision") or 0),
            last_error=d.get("lastError"),
            last_error_at=d.get("lastErrorAt"),
            pull=PullInfo.from_json(d["pull"]) if d.get("pull") else None,
            raw=d,
        )


@dataclass(frozen=True)
class PullInfo:
    """The last pull of a pool's image (``PullView``): ``phase`` is ``pulling``,
    ``pulled`` or ``failed``; ``detail`` the progress, the time it took or the
    registry's message."""

    image: str
    phase: str
    detail: str
    started_at: str
    ended_at: Optional[str] = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "PullInfo":
        return cls(
            image=d["image"],
            phase=d["phase"],
            detail=d["detail"],
            started_at=d["startedAt"],
            ended_at=d.get("endedAt"),
        )


@dataclass(frozen=True)
class PoolList:
    """``GET /v1/pools``: every pool key, live containers and the global cap."""

    pools: List[PoolStats]
    live: int
    max_instances: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "PoolList":
        return cls(
            pools=[PoolStats.from_json(p) for p in d.get("pools") or []],
            live=int(d["live"]),
            max_instances=int(d["maxInstances"]),
        )

    def ready(self, pool: Optional[str] = None) -> int:
        """Ready containers across locations, of one pool or of all."""
        return sum(p.ready for p in self.pools if pool is None or p.pool == pool)


@dataclass(frozen=True)
class PoolEvent:
    """Something that happened to a pool (created, changed, a rollout step)."""

    seq: int
    at: str
    pool: str
    kind: str
    detail: Optional[str] = None
    revision: Optional[int] = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "PoolEvent":
        return cls(
            seq=int(d["seq"]),
            at=d["at"],
            pool=d["pool"],
            kind=d["kind"],
            detail=d.get("detail"),
            revision=d.get("revision"),
        )


@dataclass(frozen=True)
class Rollout:
    """Where a pool's rollout of its current revision stands (``RolloutStatus``)."""

    revision: int
    stable_revision: int
    updated_ready: int
    stale_ready: int
    outdated_allocated: int
    phase: str
    error: Optional[str] = None
    started_at: Optional[str] = None
    deadline: Optional[str] = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Rollout":
        return cls(
            revision=int(d["revision"]),
            stable_revision=int(d["stableRevision"]),
            updated_ready=int(d["updatedReady"]),
            stale_ready=int(d["staleReady"]),
            outdated_allocated=int(d["outdatedAllocated"]),
            phase=d["phase"],
            error=d.get("error"),
            started_at=d.get("startedAt"),
            deadline=d.get("deadline"),
        )


@dataclass(frozen=True)
class PoolDetail:
    """``GET /v1/pools/{pool}``. ``settings`` is the resolved ``[pools.NAME]``
    table as a dict, keyed as in the config file."""

    name: str
    settings: Dict[str, Any]
    revision: int
    rollout: Rollout
    locations: List[PoolStats]
    events: List[PoolEvent]
    created_at: str
    updated_at: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "PoolDetail":
        return cls(
            name=d["name"],
            settings=dict(d.get("settings") or {}),
            revision=int(d["revision"]),
            rollout=Rollout.from_json(d["rollout"]),
            locations=[PoolStats.from_json(p) for p in d.get("locations") or []],
            events=[PoolEvent.from_json(e) for e in d.get("events") or []],
            created_at=d["createdAt"],
            updated_at=d["updatedAt"],
            raw=d,
        )


@dataclass(frozen=True)
class ProxyResponse:
    """The answer of a request proxied to a container (any status)."""

    status: int
    reason: str
    headers: Dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        import json

        return json.loads(self.body)

    def header(self, name: str) -> Optional[str]:
        """A header's value, by case-insensitive name."""
        want = name.lower()
        for k, v in self.headers.items():
            if k.lower() == want:
                return v
        return None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def raise_for_status(self) -> "ProxyResponse":
        """Raises :class:`WarmpoolError` unless the status is 2xx (for
        warmpool's own proxy errors, 403/404/410/502/504, with its problem
        document); returns itself otherwise."""
        if not self.ok:
            from .errors import error_from_answer

            raise error_from_answer(self.status, self.reason, self.headers, self.body)
        return self
