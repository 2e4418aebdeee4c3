"""PostgreSQL log URLs: recognise them, split off the ``#table``, and keep the password out of sight.

A review-log URL is a libpq URL (``postgresql://user:password@host:5432/db?sslmode=require``)
with an optional fragment naming the table (``#guard_prod``; libpq itself has no use for a
fragment). Everything a user or a log file may see (``repr``, errors, report titles) shows
the URL with ``***`` for the password; error texts from libpq are scrubbed too, since libpq
quotes the offending part of a URL it cannot parse.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

URL_SCHEMES = ("postgresql", "postgres")
DEFAULT_TABLE = "spill_guard_review"
TABLE_NAME = re.compile(r"(?:[a-z_][a-z0-9_]{0,39}\.)?[a-z_][a-z0-9_]{0,39}")
_PASSWORD_OPTION = re.compile(r"(password=)[^&]*", re.IGNORECASE)


def is_postgres_url(location: Any) -> bool:
    """Whether ``location`` names a PostgreSQL log (``postgresql://…`` or ``postgres://…``)."""
    return isinstance(location, str) and "://" in location and location.split("://", 1)[0].lower() in URL_SCHEMES


def split_table(url: str) -> tuple[str, str]:
    """``(url without its fragment, table named by the fragment or "")``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(fragment="")), parts.fragment


def mask_password(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` option) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    query = _PASSWORD_OPTION.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def passwords_in(url: str) -> list[str]:
    """The password as written in ``url``, percent-decoded and re-encoded (libpq may echo any)."""
    parts = urlsplit(url)
    found = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    found += [m.group(0)[len("password=") :] for m in _PASSWORD_OPTION.finditer(parts.query)]
    return [p for raw in found if raw for p in {raw, unquote(raw), quote(unquote(raw), safe="")}]


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
