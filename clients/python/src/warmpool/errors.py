"""The one exception the client raises for an error answer."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

__all__ = ["WarmpoolError"]


class WarmpoolError(Exception):
    """An error answer from warmpool, carrying its problem document.

    warmpool answers every error with an RFC 9457 ``application/problem+json``
    document: ``type``, ``title``, ``status``, ``detail`` and, for validation
    errors, ``field``. ``problem`` is that document as received, extra members
    included. An error answer that is not a problem document (say, from a proxy
    in front of warmpool) gets one made up from its status line and body, with
    ``type`` ``about:blank``.

    Network failures (refused connection, timeout) are not answers: they are
    raised as the standard library's ``OSError`` subclasses.
    """

    def __init__(
        self,
        problem: Mapping[str, Any],
        *,
        method: str = "",
        url: str = "",
        retry_after: Optional[int] = None,
    ) -> None:
        self.problem: Dict[str, Any] = dict(problem)
        self.method = method
        self.url = url
        self.retry_after = retry_after
        super().__init__(str(self))

    @property
    def status(self) -> int:
        return int(self.problem.get("status") or 0)

    @property
    def type(self) -> str:
        return str(self.problem.get("type") or "about:blank")

    @property
    def title(self) -> str:
        return str(self.problem.get("title") or "")

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail") or "")

    @property
    def field(self) -> Optional[str]:
        f = self.problem.get("field")
        return None if f is None else str(f)

    def __str__(self) -> str:
        where = f" ({self.method} {self.url})" if self.method else ""
        field = f" [field {self.field}]" if self.field else ""
        return f"{self.status} {self.title}: {self.detail}{field}{where}"

    def __repr__(self) -> str:
        return f"WarmpoolError({self.problem!r})"


def error_from_answer(
    status: int,
    reason: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str = "",
    url: str = "",
) -> WarmpoolError:
    """The exception for an error answer: its problem document if it is one,
    else one made up from the status line and the start of the body."""
    import json

    problem: Optional[Dict[str, Any]] = None
    ctype = ""
    retry_after: Optional[int] = None
    for k, v in headers.items():
        lk = k.lower()
        if lk == "content-type":
            ctype = v.lower()
        elif lk == "retry-after":
            try:
                retry_after = int(v.strip())
            except ValueError:
                pass
    if "json" in ctype:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and "status" in doc and "title" in doc:
            problem = doc
    if problem is None:
        problem = {
            "type": "about:blank",
            "title": reason or f"HTTP {status}",
            "status": status,
            "detail": body[:500].decode("utf-8", errors="replace"),
        }
    return WarmpoolError(problem, method=method, url=url, retry_after=retry_after)
