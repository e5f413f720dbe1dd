"""Where dataset files are found, how they are checked, and how missing ones are fetched.

Lookup order, for every dataset: the folder given by ``data_dir`` or ``HPO_DATA_DIR``
(read-only is fine; torchvision's layout), then a writable cache (``HPO_CACHE_DIR``, default
``~/.cache/reluprime-hpo/datasets``, the same layout) where missing files are downloaded.
Every file is checked against its MD5 sum before anything reads it, and a download is
written under a private temporary name and renamed only once verified, so an interrupted
download or a concurrent worker never leaves a half file in place.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets.utils import calculate_md5, download_url

from hpo.errors import ChecksumError, DataError

__all__ = [
    "RemoteFile",
    "find_or_download",
]

logger = logging.getLogger(__name__)

# torchvision's download_url opens URLs without a timeout: on a network that silently drops
# packets each mirror would wait for the OS connect timeout (minutes).
_DOWNLOAD_TIMEOUT_S = 60.0

# (resolved path, size, mtime_ns) -> md5 of a file already hashed in this process, so that
# many trials in one worker hash the large files once.
_md5_seen: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its name, MD5 sum and the URLs to try in order."""

    filename: str
    md5: str
    urls: tuple[str, ...]


def _cache_dir() -> Path:
    """The writable cache: ``HPO_CACHE_DIR``, else ``~/.cache/reluprime-hpo/datasets``."""
    env = os.environ.get("HPO_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "reluprime-hpo" / "datasets"


def _data_root(data_dir: str | os.PathLike | None) -> Path | None:
    """The read-only data folder: ``data_dir``, else ``HPO_DATA_DIR``, else ``None``."""
    if data_dir is None:
        data_dir = os.environ.get("HPO_DATA_DIR") or None
    return None if data_dir is None else Path(data_dir).expanduser()


def _verify_md5(path: Path, expected: str) -> None:
    """Raise :class:`~hpo.errors.ChecksumError` unless the MD5 of ``path`` is ``expected``
    (memoised per file)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    actual = _md5_seen.get(key)
    if actual is None:
        actual = _md5_seen[key] = calculate_md5(path)
    if actual != expected:
        raise ChecksumError(
            f"{path}: bad checksum (md5 {actual}, expected {expected}): the file is corrupt or "
            "not the official one; delete it (or replace it with the official file) and run "
            "again to re-download it."
        )


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def find_or_download(
    dataset: str,
    files: Sequence[RemoteFile],
    *,
    data_dir: str | os.PathLike | None,
    subfolder: str = "",
) -> list[Path]:
    """The verified paths of ``files``, downloading missing ones into the cache.

    Args:
        dataset: the dataset's name, for messages.
        files: what to find.
        data_dir: the read-only data folder (default ``HPO_DATA_DIR``); never written to.
        subfolder: torchvision's folder for these files under a root ('' for files directly
            in the root, as torchvision's CIFAR10 and SVHN keep their archives).

    Raises:
        DataError: ``data_dir`` does not exist, a file has a wrong checksum, or a missing
            file cannot be downloaded.
    """
    root = _data_root(data_dir)
    cache = _cache_dir() / subfolder if subfolder else _cache_dir()
    candidates = [cache]
    if root is not None:
        if not root.is_dir():
            # A typo in --data-dir must not silently turn into a download elsewhere.
            raise DataError(
                f"data dir {str(root)!r} does not exist; point --data-dir / HPO_DATA_DIR at the "
                f"folder holding {', '.join(f.filename for f in files)}, or unset it to use "
                f"the cache {cache} (files are downloaded there when missing)."
            )
        candidates = [root / subfolder, root, cache] if subfolder else [root, cache]
    found: dict[str, Path] = {}
    for f in files:
        for folder in candidates:
            if (folder / f.filename).is_file():
                found[f.filename] = folder / f.filename
                break
    # Present files are checked before any download, so a corrupt file fails fast offline.
    for f in files:
        if f.filename in found:
            _verify_md5(found[f.filename], f.md5)
    missing = [f for f in files if f.filename not in found]
    if missing:
        _download(dataset, missing, cache, root, subfolder)
        found.update({f.filename: cache / f.filename for f in missing})
    return [found[f.filename] for f in files]


def _download(
    dataset: str, files: Sequence[RemoteFile], cache: Path, root: Path | None, subfolder: str
) -> None:
    errors: list[str] = []
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        errors.append(f"cannot create {cache}: {exc}")
    for f in files if not errors else []:
        tmp = cache / f".{f.filename}.{os.getpid()}.part"
        for url in f.urls:
            logger.debug("downloading %s into %s", url, cache)
            try:
                # download_url checks the MD5 of what it fetched before we rename it.
                with _socket_timeout(_DOWNLOAD_TIMEOUT_S):
                    download_url(url, cache, tmp.name, f.md5)
                os.replace(tmp, cache / f.filename)
                logger.info("downloaded %s into %s", url, cache)
                break
            except (OSError, RuntimeError, ValueError, http.client.HTTPException) as exc:
                logger.debug("download of %s failed: %s", url, exc)
                errors.append(f"{url}: {exc}")
            finally:
                tmp.unlink(missing_ok=True)
        else:
            break  # every URL failed: most likely offline, so do not try the other files
    missing = [f for f in files if not (cache / f.filename).is_file()]
    if missing:
        inside = f"{subfolder}/" if subfolder else ""
        where = (
            f"{root / subfolder if subfolder else root} (the folder given by "
            "--data-dir/HPO_DATA_DIR)"
            if root is not None
            else f"<DIR>/{inside} and pass --data-dir DIR (or set HPO_DATA_DIR=DIR)"
        )
        raise DataError(
            f"dataset {dataset!r}: missing {', '.join(f.filename for f in missing)} and download "
            f"failed ({errors[-1] if errors else 'unknown error'}); put the official files in "
            f"{where} or in the cache {cache} (set by HPO_CACHE_DIR); fetch them from "
            f"{' or '.join(u for f in missing for u in f.urls)}."
        )
