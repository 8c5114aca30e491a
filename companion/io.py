"""Saving and loading files so that a reader never sees a half-written or damaged one as valid.

:func:`save_atomic` writes ``torch.save``'s zip archive and stores the SHA-256 of those bytes in
the archive's comment (the last field of a zip file), so the file stays an ordinary
``torch.load``-able archive. :func:`load_checked` recomputes the digest before unpickling and
raises :class:`CorruptFileError` for a truncated, bit-flipped or foreign file.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import socket
import struct
from pathlib import Path
from typing import Any

import torch

__all__ = ["CorruptFileError", "load_checked", "save_atomic"]

_EOCD = b"PK\x05\x06"   # signature of a zip file's end-of-central-directory record (22 bytes)
_EOCD_SIZE = 22
_MAGIC = b"companion-sha256:"
_COMMENT_SIZE = len(_MAGIC) + 64
_CHUNK = 1 << 20
_HOST = socket.gethostname().replace(".", "-") or "host"


class CorruptFileError(ValueError):
    """A file is truncated, damaged or not one that :func:`save_atomic` wrote."""


def _write_problem(path: Path, err: BaseException) -> str:
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    reason = (f"{blocker} is a file, not a folder" if blocker is not None
              else os.strerror(err.errno) if isinstance(err, OSError) and err.errno else str(err))
    return (f"Could not write {path} ({reason}). Free space on that disk or make {path.parent} "
            "writable; for files in the cache folder, set the environment variable "
            "COMPANION_CACHE to a writable folder with free space.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files of ``path`` left by killed processes of this machine."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        fields = tmp.name[len(path.name) + 2:-len(".tmp")].split(".")
        host, pid = (fields[0], fields[1]) if len(fields) == 2 else (_HOST, fields[0])
        if host == _HOST and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _digest(f, size: int) -> str:
    """SHA-256 of the first ``size`` bytes of the open file ``f``, comment length read as 0."""
    h = hashlib.sha256()
    f.seek(0)
    remaining = size - 2
    while remaining > 0:
        block = f.read(min(_CHUNK, remaining))
        if not block:
            break
        h.update(block)
        remaining -= len(block)
    h.update(b"\0\0")
    return h.hexdigest()


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file with a SHA-256 of its bytes, then rename it into place.

    A reader never finds a half-written file at ``path``; temporary files of killed processes
    (their pid is in the name) are removed on the next save to the same path.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise type(err)(err.errno, _write_problem(path, err)) from err
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        with open(tmp, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(size - _EOCD_SIZE)
            if f.read(4) != _EOCD:  # torch.save writes no zip comment, so the record ends the file
                raise RuntimeError(f"torch.save wrote {tmp} in an unexpected format.")
            comment = _MAGIC + _digest(f, size).encode()
            f.seek(size - 2)
            f.write(struct.pack("<H", len(comment)) + comment)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise type(err)(err.errno, _write_problem(path, err)) from err
    except RuntimeError as err:
        # torch's zip writer reports a full or failing disk as "[enforce fail at
        # inline_container.cc] unexpected pos" or "PytorchStreamWriter failed writing file"
        if "inline_container" not in str(err) and "PytorchStreamWriter" not in str(err):
            raise
        raise OSError(errno.EIO, _write_problem(path, err)) from err
    finally:
        tmp.unlink(missing_ok=True)


def load_checked(path: str | os.PathLike, *, what: str = "file",
                 fix: str = "Delete it and create it again.") -> Any:
    """``torch.load`` (``weights_only``, on the CPU) of a file written by :func:`save_atomic`.

    Raises :class:`CorruptFileError`, naming the file, the problem and ``fix``, when the file is
    truncated, its bytes differ from the stored SHA-256, or it has no checksum at all.
    """
    path = Path(path)

    def corrupt(problem: str) -> CorruptFileError:
        return CorruptFileError(f"The {what} {path} {problem}. {fix}")

    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            head = (f.seek(0), f.read(4))[1]
            tail_size = _EOCD_SIZE + _COMMENT_SIZE
            f.seek(max(0, size - tail_size))
            tail = f.read(tail_size)
            if head != b"PK\x03\x04":
                raise corrupt("is not a file written by companion (not a torch archive)")
            if (len(tail) < tail_size or tail[:4] != _EOCD
                    or struct.unpack("<H", tail[20:22])[0] != _COMMENT_SIZE
                    or not tail[_EOCD_SIZE:].startswith(_MAGIC)):
                if tail[-_EOCD_SIZE:][:4] == _EOCD and tail.endswith(b"\0\0"):
                    raise corrupt("has no checksum: it was written by an older version of "
                                  "companion or by another program, so it cannot be trusted")
                raise corrupt("is truncated or damaged (its end is missing)")
            stored = tail[_EOCD_SIZE + len(_MAGIC):].decode("ascii", "replace")
            actual = _digest(f, size - _COMMENT_SIZE)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise corrupt(f"could not be read ({err})") from err
    if actual != stored:
        raise corrupt(f"is damaged: its contents have SHA-256 {actual}, but {stored} was stored "
                      "when it was saved (a disk, copy or transfer error changed it)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the bytes are as saved, but not loadable here
        raise corrupt(f"could not be loaded ({type(err).__name__}: {err})") from err
