"""Who is labelling: reviewer tokens, browser sessions and CSRF tokens of the review studio.

* **Reviewers** are named tokens (``--reviewer alice=TOKEN``, or a file of ``name token`` lines):
  signing in with a token makes every label that session gives carry the name. A client that is
  not a browser sends ``Authorization: Bearer TOKEN`` with each request instead.
* Without any token configured the studio is **open**: a person signs in with a name only (fine on
  127.0.0.1 for one person; the CLI warns, and refuses another address unless ``--read-only``).
* A **session** is a random id in an ``HttpOnly``, ``SameSite=Strict`` cookie, kept in memory.
* Every state-changing request of a session carries its **CSRF token** (a form field or the
  ``X-CSRF-Token`` header); a request signed with a bearer token needs none (no cookie is involved).
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from spill_guard.errors import InvalidParameterError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_TOKEN_LENGTH = 16
SESSION_COOKIE = "sg_session"
LOGIN_COOKIE = "sg_login"
SESSION_SECONDS = 12 * 3600
TOKEN_HINT = 'make one with: python -c "import secrets; print(secrets.token_urlsafe())"'


def check_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise InvalidParameterError(
            f"reviewer name {name!r} is not valid; use 1-64 letters, digits, '.', '_', '@' or '-' "
            "(starting with a letter or digit), e.g. alice or j.doe@example.org."
        )
    return name


class Reviewers:
    """The configured reviewer tokens (token -> name); empty means an open studio."""

    def __init__(self, entries: dict[str, str] | None = None) -> None:
        self._by_token: dict[str, str] = {}
        for name, token in (entries or {}).items():
            self.add(name, token)

    def add(self, name: str, token: str) -> None:
        check_name(name)
        if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
            raise InvalidParameterError(
                f"the token of reviewer {name!r} must be at least {MIN_TOKEN_LENGTH} characters without spaces; "
                + TOKEN_HINT
            )
        if name in self._by_token.values():
            raise InvalidParameterError(f"reviewer {name!r} is given twice; give each reviewer one token.")
        if token in self._by_token:
            raise InvalidParameterError(
                f"reviewers {self._by_token[token]!r} and {name!r} share a token; each needs their own."
            )
        self._by_token[token] = name

    @classmethod
    def parse(cls, specs: list[str], files: list[str]) -> Reviewers:
        """From ``NAME=TOKEN`` arguments and files of ``NAME TOKEN`` (or ``NAME=TOKEN``) lines (``#`` comments)."""
        reviewers = cls()
        for spec in specs:
            name, sep, token = spec.partition("=")
            if not sep:
                raise InvalidParameterError(f"--reviewer takes NAME=TOKEN, got {spec.split('=')[0]!r}...; {TOKEN_HINT}")
            reviewers.add(name.strip(), token.strip())
        for file in files:
            try:
                lines = Path(file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidParameterError(f"cannot read the reviewers file {file!r}: {exc}") from exc
            for number, line in enumerate(lines, start=1):
                text = line.split("#", 1)[0].strip()
                if not text:
                    continue
                parts = text.split("=", 1) if "=" in text else text.split(None, 1)
                if len(parts) != 2:
                    raise InvalidParameterError(f"{file}:{number}: write each reviewer as 'NAME TOKEN'.")
                reviewers.add(parts[0].strip(), parts[1].strip())
        return reviewers

    @property
    def open(self) -> bool:
        return not self._by_token

    def name_of(self, token: str) -> str | None:
        """The reviewer whose token this is (compared in constant time), else None."""
        given = token.encode("utf-8", "surrogateescape")
        found = None
        for known, name in self._by_token.items():
            if hmac.compare_digest(given, known.encode("utf-8")):
                found = name
        return found


@dataclass
class Session:
    reviewer: str
    csrf: str
    expires: float


class Sessions:
    """Signed-in browsers: session id -> reviewer and CSRF token, in memory."""

    def __init__(self, seconds: float = SESSION_SECONDS) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def start(self, reviewer: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(reviewer, secrets.token_urlsafe(32), time.monotonic() + self.seconds)
        with self._lock:
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._by_id.get(sid)
            if session is not None and session.expires <= time.monotonic():
                del self._by_id[sid]
                return None
            return session

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())
