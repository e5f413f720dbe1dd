"""Serve optuna-dashboard on a study storage.

The dashboard can create, rename and delete studies, so it is bound to 127.0.0.1 (this
machine only) unless the caller asks for another address.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Callable

from hpo.errors import UsageError
from hpo.storage.artifacts import artifact_dir as resolve_artifact_dir
from hpo.storage.artifacts import open_artifact_store
from hpo.storage.urls import mask_url
from hpo.worker.lookup import open_existing_storage

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "serve"]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def _check_port(host: str, port: int) -> None:
    """Fail early, with the fix, when ``host:port`` cannot be bound.

    Raises:
        UsageError: the port is taken or the address is not one of this machine's.
    """
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a TCP port; allowed: 1-65535; fix: --port 8080.")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(
            f"--host {host!r} is not a known address ({exc.strerror}); fix: --host 127.0.0.1."
        ) from exc
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} on {host} is already in use; fix: pick another with --port."
                ) from exc
            raise UsageError(
                f"cannot listen on {host}:{port} ({exc.strerror}); fix: use --host 127.0.0.1 "
                "or an address of this machine, and a free --port."
            ) from exc


def serve(
    url: str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    announce: Callable[[str], None] = print,
    artifact_dir: str | os.PathLike | None = None,
) -> None:
    """Serve the dashboard for every study in the storage at ``url`` until interrupted
    (Ctrl-C returns).

    The study artifacts (``hpo compare``'s reports) are served from ``artifact_dir``, by
    default the folder ``hpo compare`` uploads to (:mod:`hpo.storage.artifacts`).

    Raises:
        UsageError: ``host:port`` cannot be bound.
        StudyNotFoundError: ``url`` is a SQLite file that does not exist (a dashboard in
            the wrong folder must not create an empty database there).
        StorageError: the storage cannot be reached.
    """
    import optuna_dashboard

    _check_port(host, port)  # before the storage is opened
    storage = open_existing_storage(url)
    local = _is_loopback(host)
    if not local:
        log.warning(
            "the dashboard listens on %s, reachable from the network: anyone who can reach "
            "port %d can read, create, rename and delete studies (it has no login); fix: "
            "omit --host (127.0.0.1) and use an SSH tunnel (ssh -L %d:127.0.0.1:%d HOST)",
            host, port, port, port,
        )
    where = "this machine only" if local else "the network"
    announce(
        f"optuna-dashboard for {mask_url(url)} at http://{_url_host(host)}:{port}/ "
        f"(bound to {host}: reachable from {where}; Ctrl-C stops it); artifacts from "
        f"{resolve_artifact_dir(url, artifact_dir)}/"
    )
    try:
        optuna_dashboard.run_server(storage, host=host, port=port,
                                    artifact_store=open_artifact_store(url, artifact_dir))
    except KeyboardInterrupt:
        log.info("dashboard stopped")


def _is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback address (this machine only)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(info[4][0].split("%", 1)[0]).is_loopback for info in infos
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
