"""One download helper for the full world: resume, SHA-256 (or MD5) check, atomic rename."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from .progress import tqdm

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; downloads there are not guarded
    fcntl = None

from .runtime import cache_dir

CHUNK = 1 << 20
_DISK_ERRORS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM)


class DownloadError(RuntimeError):
    """A download failed or its file does not match the expected checksum."""


def sha256sum(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """The SHA-256 hex digest of a file."""
    return _digest(path, hashlib.sha256(), chunk)


def md5sum(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """The MD5 hex digest of a file (for sources that publish no SHA-256)."""
    return _digest(path, hashlib.md5(usedforsecurity=False), chunk)


def _digest(path: str | os.PathLike, h, chunk: int) -> str:
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _mismatch(path: Path, sha256: str | None, md5: str | None) -> str | None:
    """Why ``path`` does not match the expected checksums, or ``None`` if it does."""
    for name, expected, digest in (("SHA-256", sha256, sha256sum), ("MD5", md5, md5sum)):
        if expected is not None:
            got = digest(path)
            if got != expected.lower():
                return f"its {name} is {got}, expected {expected}"
    return None


def _manual_hint(url: str, target: Path) -> str:
    return (f"Download {url} by hand (a browser or `curl -L -o {target.name} {url}`) and put it at "
            f"{target}; it is checked by its SHA-256 and used without downloading again.")


def download(url: str, sha256: str | None, filename: str | None = None,
             folder: str | os.PathLike | None = None, *, md5: str | None = None,
             timeout: float = 60.0, progress: bool = True) -> Path:
    """Fetch ``url`` into ``folder`` (default: the cache folder) and return the file's path.

    A complete file with the right checksum is reused. A partial ``.part`` file is resumed with an
    HTTP range request. The finished file is checked against ``sha256`` (and ``md5`` if given) and
    only then renamed into place, so a killed or corrupted download never looks complete.
    Concurrent calls for one file (DDP ranks, two notebooks) take turns on a lock file beside it:
    the first downloads, the others wait and then reuse the verified file.
    """
    folder = Path(folder) if folder is not None else cache_dir("downloads")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(_folder_problem(folder, err)) from err
    target = folder / (filename or url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
    if target.exists():
        return _verified(target, url, sha256, md5)
    with _exclusive(target.with_name(target.name + ".lock")):  # one writer per file: the
        # other processes wait here, then reuse the verified file
        if target.exists():
            return _verified(target, url, sha256, md5)
        return _download_locked(url, target, sha256, md5, timeout=timeout, progress=progress)


def _verified(target: Path, url: str, sha256: str | None, md5: str | None) -> Path:
    problem = _mismatch(target, sha256, md5)
    if problem is None:
        return target
    raise DownloadError(f"{target} exists but {problem}: the file is corrupted or from another "
                        "release. Delete it and call again. " + _manual_hint(url, target))


def _folder_problem(folder: Path, err: OSError) -> str:
    reason = os.strerror(err.errno) if err.errno else str(err)
    return (f"Cannot write into the download folder {folder} ({reason}). Make it writable or free "
            "space there, pass folder=... , or set the environment variable COMPANION_CACHE to "
            "a writable folder with free space.")


@contextlib.contextmanager
def _exclusive(lock: Path):
    """Hold an exclusive lock on the file ``lock`` (removed again on release)."""
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise DownloadError(_folder_problem(lock.parent, err)) from err
        try:
            if fcntl is None:
                raise OSError(errno.ENOLCK, "no file locks on this platform")
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (some network mounts): go on unlocked
            os.close(fd)
            yield
            return
        try:  # the holder before us may have removed the file we waited on: lock the new one
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # before unlocking, so a waiter sees that it is gone
        os.close(fd)


def _download_locked(url: str, target: Path, sha256: str | None, md5: str | None, *,
                     timeout: float, progress: bool) -> Path:
    part = target.with_name(target.name + ".part")
    total = _fetch(url, part, timeout=timeout, progress=progress, hint=_manual_hint(url, target))
    if total is not None and part.stat().st_size > total:
        part.unlink()
        raise DownloadError(f"The partial file for {url} was longer than the file on the server "
                            "and was deleted; call again. " + _manual_hint(url, target))
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f"Download of {url} is truncated ({part.stat().st_size} of {total} "
                            "bytes); call again to resume. " + _manual_hint(url, target))
    problem = _mismatch(part, sha256, md5)
    if problem is not None:
        part.unlink()
        raise DownloadError(f"Checksum mismatch for {url}: {problem}. The partial file was "
                            "deleted; call again. " + _manual_hint(url, target))
    os.replace(part, target)
    return target


def _fetch(url: str, part: Path, *, timeout: float, progress: bool, hint: str) -> int | None:
    """Append the rest of ``url`` to ``part`` (or write it afresh); return the expected size."""
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
                    desc=part.name.removesuffix(".part"), disable=not progress) as bar:
                read = getattr(response, "read1", response.read)  # what has arrived, at once
                while block := read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:
            # the server has nothing past our partial file: it is complete (or too long)
            size = re.fullmatch(r"bytes \*/(\d+)", err.headers.get("Content-Range", ""))
            return int(size.group(1)) if size else None
        raise DownloadError(f"Could not download {url}: {err}. " + hint) from err
    except OSError as err:
        if not isinstance(err, urllib.error.URLError) and err.errno in _DISK_ERRORS:
            raise DownloadError(_folder_problem(part.parent, err)
                                + " A partial file is kept and resumed on the next call.") from err
        raise DownloadError(f"Could not download {url}: {err}. " + hint
                            + " A partial file is kept and resumed on the next call.") from err
    except http.client.HTTPException as err:
        raise DownloadError(f"Could not download {url}: {err}. " + hint
                            + " A partial file is kept and resumed on the next call.") from err
    return total


def extract(archive: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Unpack a ``.tgz``/``.tar``/``.zip`` into ``folder`` atomically (via a temporary folder)."""
    archive, folder = Path(archive), Path(folder)
    if not archive.is_file():
        raise FileNotFoundError(f"No archive at {archive}: download it first.")
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
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error)):
            raise DownloadError(f"{archive} is damaged ({err}); delete it and download "
                                "again.") from err
        raise
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def _journal(archive: Path, root: Path) -> Path:
    return root / f".{archive.name}.unpacking"


def unpack_interrupted(archive: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether an :func:`unpack` of ``archive`` into ``root`` was started and never finished."""
    return _journal(Path(archive), Path(root)).exists()


def unpack(archive: str | os.PathLike, root: str | os.PathLike, *,
           done: Callable[[], bool] | None = None) -> bool:
    """Unpack ``archive`` and move its top-level entries into ``root`` (replacing those there).

    A marker file is written before the first step and removed after the last, so a run killed
    anywhere in between is seen by :func:`unpack_interrupted` and redone from the archive.
    Processes unpacking the same archive take turns; one that finds ``done()`` true and no
    interrupted run once it has its turn does nothing. Returns whether it unpacked.
    """
    archive, root = Path(archive), Path(root)
    root.mkdir(parents=True, exist_ok=True)
    journal = _journal(archive, root)
    with _exclusive(root / f".{archive.name}.unpack.lock"):
        if done is not None and not journal.exists() and done():
            return False  # another process unpacked it while this one waited
        journal.write_text(f"unpacking {archive.name} into this folder; if this file stays, "
                           "the unpacking was interrupted and is redone on the next download\n")
        staging = extract(archive, root / f".{archive.name}.contents")
        for entry in sorted(staging.iterdir()):
            target = root / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
        staging.rmdir()
        journal.unlink()
    return True
