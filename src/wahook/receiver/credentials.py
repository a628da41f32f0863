"""Per-organization verify tokens and app secrets, from the ``organizations`` table.

``OrgCredentials`` keeps a snapshot in memory so the receiver core can ask synchronously;
``refresh()`` reloads it: the aiohttp app asks when a handshake or a signature is refused
(at most once a second, so refusals cannot flood the database), and ``wahook serve``
reloads every ``interval`` seconds (``refresh(force=True)``),
so added, changed and deactivated organizations take effect without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence

from wahook.sinks.queries import OrganizationSecrets

log = logging.getLogger("wahook.receiver")

Loader = Callable[[], Awaitable[Sequence[OrganizationSecrets]]]


class OrgCredentials:
    """The ``Credentials`` of ``wahook.receiver.core`` backed by a loader (normally
    ``wahook.sinks.queries.organization_secrets`` on a pool)."""

    def __init__(self, load: Loader, *, min_interval: float = 1.0) -> None:
        self._load = load
        self.min_interval = min_interval
        self._tokens: tuple[str, ...] = ()
        self._by_phone: dict[str, tuple[str, ...]] = {}
        self._by_waba: dict[str, tuple[str, ...]] = {}
        # app secret -> every active organization holding it (the verdict when it verifies)
        self._holders: dict[str, frozenset[int]] = {}
        self._refused_at = float("-inf")
        self._lock = asyncio.Lock()
        self.organizations = 0

    def verify_tokens(self) -> Collection[str]:
        return self._tokens

    def app_secrets(
        self, phone_number_ids: Iterable[str], waba_ids: Iterable[str]
    ) -> Mapping[str, frozenset[int]]:
        out: dict[str, frozenset[int]] = {}
        for pid in phone_number_ids:
            for secret in self._by_phone.get(pid, ()):
                out[secret] = self._holders[secret]
        for wid in waba_ids:
            for secret in self._by_waba.get(wid, ()):
                out[secret] = self._holders[secret]
        return out

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload; unless ``force``, not if the last unforced reload was under
        ``min_interval`` ago. True when reloaded (the caller may judge its request again);
        False when skipped or failed."""
        async with self._lock:
            if not force:
                # Only reloads asked for by refusals count against the rate: the first
                # refusal after start-up always reloads.
                if time.monotonic() - self._refused_at < self.min_interval:
                    return False
                self._refused_at = time.monotonic()
            try:
                orgs = await self._load()
            except Exception as exc:  # a database hiccup must not take the receiver down
                log.warning("organization_credentials_unavailable error=%s", type(exc).__name__)
                return False
            self._install(orgs)
            return True

    def _install(self, orgs: Sequence[OrganizationSecrets]) -> None:
        tokens: list[str] = []
        by_phone: dict[str, list[str]] = {}
        by_waba: dict[str, list[str]] = {}
        holders: dict[str, set[int]] = {}
        for org in orgs:
            if org.verify_token:
                tokens.append(org.verify_token)
            if org.app_secret:
                holders.setdefault(org.app_secret, set()).add(org.id)
                if org.phone_number_id:
                    by_phone.setdefault(org.phone_number_id, []).append(org.app_secret)
                if org.waba_id:
                    by_waba.setdefault(org.waba_id, []).append(org.app_secret)
        self._tokens = tuple(dict.fromkeys(tokens))
        self._by_phone = {k: tuple(v) for k, v in by_phone.items()}
        self._by_waba = {k: tuple(v) for k, v in by_waba.items()}
        self._holders = {k: frozenset(v) for k, v in holders.items()}
        self.organizations = len(orgs)

    async def keep_fresh(self, interval: float = 30.0) -> None:
        """Reload every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.refresh(force=True)


def dsn_loader(dsn: str) -> Loader:
    """A loader that opens one connection per load (the Lambda handler: no pool to keep)."""

    async def load() -> Sequence[OrganizationSecrets]:
        import asyncpg

        from wahook.sinks.queries import organization_secrets

        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return await organization_secrets(conn)
        finally:
            await conn.close()

    return load
