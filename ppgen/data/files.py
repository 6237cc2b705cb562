"""Data files on disk: md5 checks, atomic writes and verified downloads, shared by the loaders.

Every loader verifies the files it reads against known md5 sums and writes files atomically
(a temporary file in the same directory, then ``os.replace``), so an interrupted download or
write never leaves a partial file under the final name.
"""

import hashlib
import http.client
import os
import pathlib
import tempfile
import urllib.request
from collections.abc import Callable, Sequence

from ppgen.errors import DataError

__all__ = [
    "DOWNLOAD_TIMEOUT_S",
    "check_md5",
    "download_verified",
    "fetch_url",
    "unreadable_message",
    "write_atomic",
]

DOWNLOAD_TIMEOUT_S = 10.0
"""Seconds a download waits for a server before giving up on that URL."""

StrPath = str | os.PathLike


def check_md5(raw: bytes, path: StrPath, expected: str, fix: str) -> None:
    """Refuse the bytes ``raw`` read from ``path`` unless their md5 is ``expected``.

    Args:
        raw: the file's content.
        path: the file, for the message.
        expected: the md5 hex digest it must have.
        fix: what the user should do, ending the message (e.g. "re-download it").

    Raises:
        DataError: ``"file PATH is corrupt (md5 X, expected Y); FIX"``.
    """
    digest = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    if digest != expected:
        raise DataError(f"file {path} is corrupt (md5 {digest}, expected {expected}); {fix}")


def unreadable_message(what: str, err: OSError) -> str:
    """The one-line message for data that cannot be read (permissions and the like):
    ``"cannot read WHAT (Permission denied: PATH); make it readable, or set PPGEN_DATA ..."``.
    """
    return (
        f"cannot read {what} ({err.strerror}: {err.filename}); make it readable, or set "
        "PPGEN_DATA (or pass data_dir=) to a directory you can read"
    )


def fetch_url(url: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> bytes:
    """The body of ``url`` (with ``download_verified``, the only code that uses the network).

    Raises:
        OSError, http.client.HTTPException, ValueError: as ``urllib`` raises them.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "ppgen"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def write_atomic(path: StrPath, payload: bytes, *, mode: int = 0o644) -> None:
    """Write ``payload`` to ``path`` through a temporary file in the same directory and
    ``os.replace``: ``path`` is either absent/unchanged or holds all of ``payload``.

    The parent directory is created if needed; an existing ``path`` is replaced (callers
    that must not overwrite check first).

    Raises:
        OSError: the directory cannot be created or written (permissions, a full disk).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def download_verified(
    filename: str,
    directory: StrPath,
    urls: Sequence[str],
    md5: str,
    *,
    fetch: Callable[[str], bytes] | None = None,
) -> None:
    """Fetch ``filename`` from the first URL that serves bytes with md5 ``md5`` and write it
    to ``directory/filename`` atomically (see `write_atomic`).

    Args:
        filename: the file's name in ``directory``.
        directory: where it goes (created if needed).
        urls: full URLs tried in order.
        md5: the md5 hex digest the file must have.
        fetch: ``url -> bytes``; `fetch_url` by default (tests pass an offline one).

    Raises:
        OSError: naming every URL tried and why it failed (unreachable, wrong md5).
    """
    fetch = fetch_url if fetch is None else fetch
    failures = []
    for url in urls:
        try:
            payload = fetch(url)
        except (OSError, http.client.HTTPException, ValueError) as err:
            failures.append(f"{url}: {err}")
            continue
        digest = hashlib.md5(payload, usedforsecurity=False).hexdigest()
        if digest != md5:
            failures.append(f"{url}: md5 {digest}, expected {md5}")
            continue
        write_atomic(pathlib.Path(directory) / filename, payload)
        return
    raise OSError("; ".join(failures))
