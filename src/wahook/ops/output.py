"""What the ops commands print: exit statuses, secret masking, progress.

Exit statuses are the same for every ops command, so a deploy script can tell "the
deployment is unhealthy" from "the check itself could not run".
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from wahook.runtime.logs import redact_text
from wahook.settings import Settings

EXIT_OK = 0
EXIT_UNHEALTHY = 1
"""A check failed: the deployment answered wrongly, or the queue/dead-letter queue is unhealthy."""
EXIT_USAGE = 2
"""Bad flags or missing configuration (no URL, no secret ...): fix the command line."""
EXIT_UNREACHABLE = 3
"""An AWS or database call failed (credentials, endpoint, no such queue): nothing was judged."""

EXIT_CODES = """\
exit status: 0 all good; 1 unhealthy (a check failed); 2 usage or configuration error;
3 an AWS or database call failed, so nothing could be judged."""


class Masker:
    """Replaces every known secret value in a text with ``***`` (and URL passwords)."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, *secrets: str | None) -> None:
        self.secrets = sorted(
            {*self.secrets, *(s for s in secrets if s and len(s) >= 4)}, key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return redact_text(text)

    @classmethod
    def from_settings(cls, settings: Settings) -> Masker:
        from urllib.parse import unquote, urlsplit

        password = urlsplit(settings.dsn).password if settings.dsn else None
        return cls(
            [
                settings.verify_token,
                *settings.app_secrets,
                password,
                unquote(password) if password else None,
                os.environ.get("DB_PASSWORD"),
                os.environ.get("AWS_SECRET_ACCESS_KEY"),
                os.environ.get("AWS_SESSION_TOKEN"),
            ]
        )


class Printer:
    """Masked lines to ``out``; progress to ``err`` (on a terminal, one rewritten line)."""

    def __init__(self, mask: Masker, out: TextIO | None = None, err: TextIO | None = None):
        self.mask = mask
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self._progress_open = False

    def line(self, text: str = "") -> None:
        self._end_progress()
        print(self.mask(text), file=self.out, flush=True)

    def error(self, text: str) -> None:
        self._end_progress()
        print(self.mask(text), file=self.err, flush=True)

    def progress(self, text: str) -> None:
        if self.err.isatty():
            print("\r" + self.mask(text), end="", file=self.err, flush=True)
            self._progress_open = True
        else:
            print(self.mask(text), file=self.err, flush=True)

    def _end_progress(self) -> None:
        if self._progress_open:
            print(file=self.err, flush=True)
            self._progress_open = False


def local_secret_file(settings: Settings, name: str) -> str | None:
    """``<data dir>/<name>`` as ``wahook serve`` keeps it (local test secrets), if any."""
    try:
        return Path(settings.data_dir, name).read_text().strip() or None
    except OSError:
        return None


def verify_token(settings: Settings) -> str | None:
    return settings.verify_token or local_secret_file(settings, "verify_token")


def app_secret(settings: Settings) -> str | None:
    return (
        settings.app_secrets[0]
        if settings.app_secrets
        else local_secret_file(settings, "app_secret")
    )
