"""One download helper for the full world: resume, SHA-256 check, atomic rename."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from .runtime import cache_dir

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed or its file does not match the expected checksum."""


def sha256sum(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """The SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _manual_hint(url: str, target: Path) -> str:
    return (f"Download {url} by hand (a browser or `curl -L -o {target.name} {url}`) and put it at "
            f"{target}; it is checked by its SHA-256 and used without downloading again.")


def download(url: str, sha256: str | None, filename: str | None = None,
             folder: str | os.PathLike | None = None, *, timeout: float = 60.0,
             progress: bool = True) -> Path:
    """Fetch ``url`` into ``folder`` (default: the cache folder) and return the file's path.

    A complete file with the right checksum is reused. A partial ``.part`` file is resumed with an
    HTTP range request. The finished file is checked against ``sha256`` and only then renamed into
    place, so a killed or corrupted download never looks complete.
    """
    folder = Path(folder) if folder is not None else cache_dir("downloads")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (filename or url.rstrip("/").rsplit("/", 1)[-1])
    if target.exists():
        if sha256 is None or sha256sum(target) == sha256:
            return target
        raise DownloadError(f"{target} exists but its SHA-256 is {sha256sum(target)}, expected "
                            f"{sha256}: the file is corrupted or from another release. Delete it "
                            f"and call again. " + _manual_hint(url, target))
    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "companion"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = start > 0 and getattr(response, "status", 200) == 206
            if not resumed:
                start = 0
            total = response.headers.get("Content-Length")
            total = int(total) + start if total is not None else None
            with open(part, "ab" if resumed else "wb") as out, tqdm(
                    total=total, initial=start, unit="B", unit_scale=True,
                    desc=target.name, disable=not progress) as bar:
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise DownloadError(f"Could not download {url}: {err}. " + _manual_hint(url, target)
                            + " A partial file is kept and resumed on the next call.") from err
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f"Download of {url} is truncated ({part.stat().st_size} of {total} "
                            "bytes); call again to resume. " + _manual_hint(url, target))
    if sha256 is not None:
        digest = sha256sum(part)
        if digest != sha256:
            part.unlink()
            raise DownloadError(f"Checksum mismatch for {url}: got {digest}, expected {sha256}. "
                                "The partial file was deleted; call again. " + _manual_hint(url, target))
    os.replace(part, target)
    return target


def extract(archive: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Unpack a ``.tgz``/``.tar``/``.zip`` into ``folder`` atomically (via a temporary folder)."""
    archive, folder = Path(archive), Path(folder)
    tmp = folder.with_name(folder.name + ".extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                t.extractall(tmp, filter="data")
        else:
            raise DownloadError(f"{archive} is neither a zip nor a tar archive; delete it and "
                                "download again.")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{archive} is damaged ({err}); delete it and download again.") from err
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder
