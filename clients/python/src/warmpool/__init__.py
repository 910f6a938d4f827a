"""Python client of warmpool, the pool of pre-started containers.

    from warmpool import Client
    client = Client("http://127.0.0.1:8787", token="...")
    with client.claimed(env={"GREETING": "hi"}) as c:
        print(client.proxy(c.id, "/env").json())
"""

__version__ = "0.1.0"

from .errors import WarmpoolError  # noqa: E402
from .models import (  # noqa: E402
    Claim,
    Container,
    Event,
    EventPage,
    PoolDetail,
    PoolEvent,
    PoolList,
    PoolStats,
    ProxyResponse,
    PullInfo,
    Rollout,
)
from .client import DEFAULT_URL, Client  # noqa: E402

__all__ = [
    "Client",
    "DEFAULT_URL",
    "WarmpoolError",
    "Claim",
    "Container",
    "Event",
    "EventPage",
    "PoolDetail",
    "PoolEvent",
    "PoolList",
    "PoolStats",
    "ProxyResponse",
    "PullInfo",
    "Rollout",
]
