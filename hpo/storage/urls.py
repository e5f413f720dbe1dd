"""Storage URLs: pick one, parse it, print it without its password.

Pure functions over strings (SQLAlchemy's ``make_url``; no connection is made). A
malformed or unknown URL is one :class:`~hpo.errors.UsageError` line naming the masked
value and the fix; ``postgresql://`` and ``postgres://`` open with psycopg2
(:func:`engine_url`). See docs/design.md#storage-urls-and-the-psycopg2-driver.
"""

from __future__ import annotations

import difflib
import logging
import os
import re

import sqlalchemy.exc
from sqlalchemy.engine import URL, make_url

from hpo.errors import UsageError
from hpo.storage.project import default_database

__all__ = [
    "ENV_VAR",
    "default_storage_url",
    "engine_url",
    "is_default_storage",
    "mask_url",
    "parse_storage_url",
    "resolve_storage_url",
    "sqlite_path",
    "warn_password_in_file",
]

logger = logging.getLogger(__name__)

ENV_VAR = "HPO_STORAGE"
_EXAMPLES = "sqlite:///storage/hpo.db, postgresql://USER:PASSWORD@HOST:5432/DB"
_PASSWORD_KEYS = ("password", "passwd", "pass", "pwd")
# postgresql:// or postgres://, with or without a driver; group 1: "+driver" or None
_POSTGRES = re.compile(r"^postgres(?:ql)?(\+[A-Za-z0-9_]+)?://", re.I)
_KINDS = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")


def default_storage_url() -> str:
    """``sqlite:///<project folder>/storage/hpo.db``, absolute: the one database of every
    study of the project (:mod:`hpo.storage.project` says which folder that is)."""
    return f"sqlite:///{default_database()}"


def is_default_storage(url: str) -> bool:
    """Whether ``url`` is :func:`default_storage_url` (as resolved from here)."""
    return url == default_storage_url()


def resolve_storage_url(config_url: str | None, flag: str | None) -> str:
    """Pick the storage URL: the ``--storage`` flag, else ``$HPO_STORAGE``, else the study
    file's ``storage:``, else the project's ``storage/hpo.db`` (:func:`default_storage_url`).
    """
    for url in (flag, os.environ.get(ENV_VAR), config_url):
        if url:
            return url
    return default_storage_url()


def engine_url(url: str) -> str:
    """The URL SQLAlchemy and Optuna open: ``postgresql://`` and ``postgres://`` (no driver
    named) become ``postgresql+psycopg2://``, ``postgres+DRIVER://`` becomes
    ``postgresql+DRIVER://``; everything else is returned unchanged, byte for byte. Never
    print the result unmasked, and print the URL as given in messages."""
    match = _POSTGRES.match(url)
    if match is None:
        return url
    return f"postgresql{match.group(1) or '+psycopg2'}://{url[match.end():]}"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe to print and to store), also a
    ``?password=`` query argument and the password of a URL too malformed to parse."""
    try:
        parsed = make_url(url)
        secret = {k: "***" for k in parsed.query if k.lower() in _PASSWORD_KEYS}
        if parsed.password is None and not secret:
            return str(url)  # as given: rendering would escape e.g. '@' in a SQLite path
        text = parsed.update_query_dict(secret).render_as_string(hide_password=True)
        return text.replace("=%2A%2A%2A", "=***")
    except Exception:  # noqa: BLE001 - an unparsable URL must still never leak a password
        text = str(url)
        at = text.rfind("@")  # the last one: a password may hold '@' too
        start = text.rfind("//", 0, at) + 2 if "//" in text[:at] else 0
        user, colon, _ = text[start:at].partition(":")
        masked = f"{text[:start]}{user}:***@{text[at + 1:]}" if at >= 0 and colon else text
        return re.sub(r"(?i)(pass(?:word|wd)?|pwd)=[^&]*", r"\1=***", masked)


def parse_storage_url(url: str) -> URL:
    """Parse a storage URL (as :func:`engine_url` rewrites it), checking that SQLAlchemy
    knows its database kind.

    Raises:
        UsageError: the URL is malformed or its scheme is unknown.
    """
    try:
        parsed = make_url(engine_url(url))
        parsed.get_dialect()  # raises for an unknown scheme such as "sqlit://"
    except sqlalchemy.exc.NoSuchModuleError as exc:  # a subclass of ArgumentError: first
        kind = str(url).partition("://")[0].partition("+")[0]
        close = difflib.get_close_matches(kind.lower(), _KINDS, n=1)
        fix = "correct the scheme" + (f" (did you mean {close[0]}://?)" if close else "")
        raise UsageError(
            f"storage: unknown database kind {kind!r} in URL (got {mask_url(url)!r}); "
            f"allowed: sqlite, postgresql (or postgres), mysql (e.g. {_EXAMPLES}); fix: "
            f"{fix}."
        ) from exc
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:  # ValueError: a bad port
        raise UsageError(
            f"storage: not a database URL (got {mask_url(url)!r}); allowed: {_EXAMPLES}; "
            "fix: write it as DIALECT[+DRIVER]://..."
        ) from exc
    return parsed


def sqlite_path(url: str | URL) -> str | None:
    """The file of a SQLite URL (as SQLAlchemy reads it), or None: not SQLite, in memory, or
    not parsable."""
    try:
        parsed = make_url(engine_url(url) if isinstance(url, str) else url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def warn_password_in_file(url: str, source: str | None) -> None:
    """Warn when a URL read from a study file holds a password (it belongs in
    ``$HPO_STORAGE``, which no file and no ``ps`` shows)."""
    if source is None:
        return
    try:
        password = make_url(url).password
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return
    if password:
        logger.warning("%s: the storage URL holds a password; prefer passing it through "
                       "$%s instead of a file", source, ENV_VAR)
