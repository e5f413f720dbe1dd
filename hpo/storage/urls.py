"""Storage URLs: pick one, parse it, print it without its password.

Pure functions over strings, parsed with SQLAlchemy's :func:`~sqlalchemy.engine.make_url`
(no connection is made here). :func:`parse_storage_url` is what :func:`make_storage
<hpo.storage.rdb.make_storage>` runs first, before anything is written: a malformed or
unknown URL is one :class:`~hpo.errors.UsageError` line that names the masked value and the
fix.
"""

from __future__ import annotations

import logging
import os
import re

import sqlalchemy.exc
from sqlalchemy.engine import URL, make_url

from hpo.errors import UsageError

__all__ = [
    "ENV_VAR",
    "EXAMPLES",
    "default_storage_url",
    "mask_url",
    "parse_storage_url",
    "resolve_storage_url",
    "sqlite_path",
    "warn_password_in_file",
]

logger = logging.getLogger(__name__)

ENV_VAR = "HPO_STORAGE"
EXAMPLES = "sqlite:///storage/NAME.db, postgresql+psycopg2://USER:PASSWORD@HOST:5432/DB"
_PASSWORD_KEYS = ("password", "passwd", "pass", "pwd")


def default_storage_url(name: str) -> str:
    """``sqlite:///storage/<name>.db``: a file under ``storage/`` in the current directory."""
    return f"sqlite:///storage/{name}.db"


def resolve_storage_url(
    config_url: str | None, flag: str | None, *, name: str | None = None
) -> str:
    """Pick the storage URL: the ``--storage`` flag, else ``$HPO_STORAGE``, else the study
    file's ``storage:``, else ``sqlite:///storage/<name>.db``.

    Raises:
        UsageError: nothing is given and there is no study name to build the default from.
    """
    for url in (flag, os.environ.get(ENV_VAR), config_url):
        if url:
            return url
    if name:
        return default_storage_url(name)
    raise UsageError(
        "no storage given (got no --storage flag, no $HPO_STORAGE and no study file); "
        f"allowed: a SQLAlchemy URL such as {EXAMPLES}; fix: pass --storage URL or set "
        "HPO_STORAGE."
    )


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
    """Parse a storage URL, checking that SQLAlchemy knows its database kind.

    Raises:
        UsageError: the URL is malformed or its scheme is unknown.
    """
    try:
        parsed = make_url(url)
        parsed.get_dialect()  # raises for an unknown scheme such as "sqlit://"
    except sqlalchemy.exc.NoSuchModuleError as exc:  # a subclass of ArgumentError: first
        raise UsageError(
            f"storage: unknown database kind in URL (got {mask_url(url)!r}); allowed: "
            f"sqlite, postgresql, mysql (e.g. {EXAMPLES}); fix: correct the scheme."
        ) from exc
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:  # ValueError: a bad port
        raise UsageError(
            f"storage: not a database URL (got {mask_url(url)!r}); allowed: {EXAMPLES}; "
            "fix: write it as DIALECT[+DRIVER]://..."
        ) from exc
    return parsed


def sqlite_path(url: str | URL) -> str | None:
    """The file of a SQLite URL (as SQLAlchemy reads it), or None: not SQLite, in memory, or
    not parsable."""
    try:
        parsed = make_url(url)
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
