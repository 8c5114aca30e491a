"""Tests of the download helper against a local HTTP server that honours range requests."""

import hashlib
import http.server
import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest

from companion.download import DownloadError, download, extract, md5sum, sha256sum

PAYLOAD = bytes(range(256)) * 400 + b"tail"  # 102,404 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD; ``/norange`` ignores Range, ``/truncate`` cuts its first response short,
    ``/hold`` sends half and waits for ``server.release``."""

    timeout = 5

    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        start = 0
        ranged = self.headers.get("Range")
        if ranged and not self.path.startswith("/norange"):
            start = int(ranged.removeprefix("bytes=").rstrip("-"))
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path.startswith("/hold"):  # half now, the rest once the test releases it
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            server.release.wait(timeout=60)
            body = body[half:]
        if self.path.startswith("/truncate") and not server.truncated:
            server.truncated = True
            body = body[: len(body) // 3]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests, httpd.truncated, httpd.release = [], False, threading.Event()
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _fetch(url, tmp_path, sha256=SHA, **kw):
    return download(url, sha256, filename="file.bin", folder=tmp_path, progress=False, **kw)


def test_download_checks_sha256_and_reuses_the_file(server, tmp_path):
    path = _fetch(f"{server.url}/plain/file.bin", tmp_path)
    assert path == tmp_path / "file.bin" and path.read_bytes() == PAYLOAD
    assert not (tmp_path / "file.bin.part").exists()
    n_requests = len(server.requests)
    assert _fetch(f"{server.url}/plain/file.bin", tmp_path) == path
    assert len(server.requests) == n_requests, "a verified file was downloaded again"


def test_filename_defaults_to_the_url_without_query(server, tmp_path):
    path = download(f"{server.url}/plain/data.tgz?download=1", SHA, folder=tmp_path,
                    progress=False)
    assert path.name == "data.tgz"


def test_checksum_mismatch_deletes_everything(server, tmp_path):
    with pytest.raises(DownloadError, match="Checksum mismatch.*SHA-256"):
        _fetch(f"{server.url}/plain/file.bin", tmp_path, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_md5_is_checked_too(server, tmp_path):
    good = hashlib.md5(PAYLOAD).hexdigest()
    assert _fetch(f"{server.url}/plain/file.bin", tmp_path, sha256=None, md5=good).exists()
    assert md5sum(tmp_path / "file.bin") == good and sha256sum(tmp_path / "file.bin") == SHA
    other = tmp_path / "other"
    with pytest.raises(DownloadError, match="MD5"):
        _fetch(f"{server.url}/plain/file.bin", other, sha256=SHA, md5="f" * 32)
    assert list(other.iterdir()) == []


def test_partial_file_is_resumed_with_a_range_request(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:40000])
    path = _fetch(f"{server.url}/plain/file.bin", tmp_path)
    assert server.requests[-1][1] == "bytes=40000-"
    assert path.read_bytes() == PAYLOAD


def test_resume_ignored_by_the_server_starts_over(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(b"garbage" * 100)
    path = _fetch(f"{server.url}/norange/file.bin", tmp_path)
    assert path.read_bytes() == PAYLOAD


def test_complete_partial_file_is_finished_after_416(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD)
    assert _fetch(f"{server.url}/plain/file.bin", tmp_path).read_bytes() == PAYLOAD


def test_too_long_partial_file_is_deleted(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD + b"extra")
    with pytest.raises(DownloadError, match="longer"):
        _fetch(f"{server.url}/plain/file.bin", tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert _fetch(f"{server.url}/plain/file.bin", tmp_path).read_bytes() == PAYLOAD


def test_truncated_download_fails_keeps_part_and_resumes(server, tmp_path):
    url = f"{server.url}/truncate/file.bin"
    with pytest.raises(DownloadError, match="truncated"):
        _fetch(url, tmp_path)
    assert not (tmp_path / "file.bin").exists(), "a truncated file was renamed into place"
    kept = (tmp_path / "file.bin.part").stat().st_size
    assert 0 < kept < len(PAYLOAD)
    assert _fetch(url, tmp_path).read_bytes() == PAYLOAD
    assert server.requests[-1][1] == f"bytes={kept}-"


def test_corrupted_existing_file_is_reported(server, tmp_path):
    (tmp_path / "file.bin").write_bytes(b"not the payload")
    with pytest.raises(DownloadError, match="Delete it"):
        _fetch(f"{server.url}/plain/file.bin", tmp_path)


def test_unreachable_url_names_the_url_and_the_way_out(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/file.bin"
    with pytest.raises(DownloadError) as info:
        _fetch(url, tmp_path, timeout=5)
    assert url in str(info.value) and "by hand" in str(info.value)
    assert not (tmp_path / "file.bin").exists()


def test_http_error_names_the_url(server, tmp_path):
    with pytest.raises(DownloadError, match="missing/file.bin.*404"):
        _fetch(f"{server.url}/missing/file.bin", tmp_path)
    assert not (tmp_path / "file.bin").exists()


def test_file_url(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    path = download(source.as_uri(), SHA, folder=tmp_path / "out", progress=False)
    assert path.read_bytes() == PAYLOAD


def _archive(tmp_path: Path, kind: str) -> Path:
    files = {"top/a.txt": b"alpha", "top/sub/b.bin": PAYLOAD}
    if kind == "zip":
        path = tmp_path / "archive.zip"
        with zipfile.ZipFile(path, "w") as z:
            for name, data in files.items():
                z.writestr(name, data)
    else:
        path = tmp_path / "archive.tgz"
        with tarfile.open(path, "w:gz") as t:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_extract_unpacks_and_replaces_the_folder(tmp_path, kind):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    assert extract(_archive(tmp_path, kind), out) == out
    assert (out / "top" / "a.txt").read_bytes() == b"alpha"
    assert (out / "top" / "sub" / "b.bin").read_bytes() == PAYLOAD
    assert not (out / "stale.txt").exists()
    assert not (tmp_path / "out.extracting").exists()


@pytest.mark.parametrize("damage", ["truncate", "not an archive"])
def test_damaged_archive_fails_cleanly(tmp_path, damage):
    archive = _archive(tmp_path, "tgz")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"hello " * 100)
    with pytest.raises(DownloadError, match="archive.tgz"):
        extract(archive, tmp_path / "out")
    assert sorted(os.listdir(tmp_path)) == ["archive.tgz"]


def test_extract_of_a_missing_archive(tmp_path):
    with pytest.raises(FileNotFoundError, match="download it first"):
        extract(tmp_path / "nothing.tgz", tmp_path / "out")


DOWNLOADER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from companion.download import download
    go, ready = Path(sys.argv[3] + ".go"), Path(sys.argv[3])
    while not go.exists():  # imported; the test says when to start
        time.sleep(0.01)
    ready.touch()  # about to call download
    download(sys.argv[1], sys.argv[2], filename="file.bin", folder=sys.argv[4], progress=False)
""")


def _start_download(url, folder, marker, go=True):
    """A process that downloads once ``marker.go`` exists (made now if ``go``), and then makes
    ``marker``."""
    if go:
        Path(f"{marker}.go").touch()
    return subprocess.Popen([sys.executable, "-c", DOWNLOADER, url, SHA, str(marker), str(folder)],
                            stderr=subprocess.PIPE, text=True)


def _wait_for(condition, seconds=60.0):
    """Poll ``condition`` until it holds or ``seconds`` pass (then the test's checks decide)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def _blocked_on_a_lock(pid):
    if not Path("/proc/locks").exists():  # not Linux: the waits decide
        return False
    # a waiting flock shows as "N: -> FLOCK ADVISORY WRITE <pid> ..."
    with open("/proc/locks") as f:
        return any("->" in line and "FLOCK" in line and f" {pid} " in line for line in f)


def _half_written(tmp_path):
    part = tmp_path / "file.bin.part"
    return part.exists() and part.stat().st_size >= len(PAYLOAD) // 4  # some may sit in a buffer


def test_two_processes_on_one_file_take_turns(server, tmp_path):
    url = f"{server.url}/hold/file.bin"
    first = _start_download(url, tmp_path / "data", tmp_path / "first.ready")
    second = _start_download(url, tmp_path / "data", tmp_path / "second.ready", go=False)
    tmp_path = tmp_path / "data"
    _wait_for(lambda: _half_written(tmp_path))  # the first is half-way, inside the lock
    assert len(server.requests) == 1
    Path(f"{tmp_path.parent / 'second.ready'}.go").touch()
    _wait_for(lambda: (tmp_path.parent / "second.ready").exists())
    # without a lock the second would resume the same .part: a second request to the server
    _wait_for(lambda: len(server.requests) > 1 or _blocked_on_a_lock(second.pid),
              seconds=60 if Path("/proc/locks").exists() else 2)
    server.release.set()
    for child in (first, second):
        _, stderr = child.communicate(timeout=120)
        assert child.returncode == 0, stderr[-2000:]
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD
    assert [path for path, _ in server.requests] == ["/hold/file.bin"], "downloaded twice"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]  # no .part or .lock left


def test_a_download_killed_inside_the_lock_is_resumed_by_the_next_call(server, tmp_path):
    folder = tmp_path / "data"
    first = _start_download(f"{server.url}/hold/file.bin", folder, tmp_path / "first.ready")
    tmp_path = folder
    _wait_for(lambda: _half_written(tmp_path))
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    server.release.set()
    kept = (tmp_path / "file.bin.part").stat().st_size
    assert first.returncode == -signal.SIGKILL and (tmp_path / "file.bin.lock").exists()
    assert _fetch(f"{server.url}/plain/file.bin", tmp_path).read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/plain/file.bin", f"bytes={kept}-")
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
