"""One HTTP request, timed, that never raises: what ``check`` and ``send-test`` send."""

from __future__ import annotations

import dataclasses
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request

from wahook.parse import sign


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: no HTTP answer at all (see ``error``)
    body: str
    seconds: float
    error: str | None = None

    @property
    def ms(self) -> str:
        return f"{self.seconds * 1000:.0f} ms"


def request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Answer:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            text = response.read(4096).decode("utf-8", "replace")
            return Answer(response.status, text, time.perf_counter() - start)
    except urllib.error.HTTPError as exc:
        text = exc.read(4096).decode("utf-8", "replace")
        return Answer(exc.code, text, time.perf_counter() - start)
    except urllib.error.URLError as exc:
        return Answer(None, "", time.perf_counter() - start, str(exc.reason))
    except (TimeoutError, OSError) as exc:
        return Answer(None, "", time.perf_counter() - start, str(exc) or type(exc).__name__)


def handshake(url: str, token: str, timeout: float = 30.0) -> tuple[Answer, str]:
    """Meta's subscription GET; returns the answer and the challenge it must echo."""
    challenge = str(secrets.randbelow(10**9))
    query = urllib.parse.urlencode(
        {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": challenge}
    )
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return request("GET", f"{url}{sep}{query}", timeout=timeout), challenge


def post(url: str, body: bytes, secret: str | None, timeout: float = 30.0) -> Answer:
    """POST ``body`` as Meta does: signed with ``secret`` (unsigned when None)."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(body, secret)
    return request("POST", url, body, headers, timeout)
