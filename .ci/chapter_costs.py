"""A pytest plugin that measures what each chapter costs while nbmake executes it.

    pytest -p chapter_costs build/notebooks --nbmake    # with .ci on the path (as .ci/run does)

For every notebook item it records the wall time of the run and the peak resident memory of the
kernel (the pytest process's children, sampled every 0.2 s), and writes them to
``build/ci/chapter_costs.json``; ``tools/book_tables.py costs`` turns that file into the cost table
of the instructors' page.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import psutil
import pytest

OUTPUT = Path(os.environ.get("CHAPTER_COSTS", "build/ci/chapter_costs.json"))
SAMPLE_SECONDS = 0.2


class PeakMemory:
    """Samples the summed RSS of this process's children until stopped; ``peak`` in bytes."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # it ended between listing and reading
                    total += child.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


_costs: dict[str, dict] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    if not str(item.fspath).endswith(".ipynb"):
        yield
        return
    start = time.perf_counter()
    with PeakMemory() as memory:
        outcome = yield
    _costs[Path(str(item.fspath)).stem] = {
        "seconds": round(time.perf_counter() - start, 1),
        "peak_mib": round(memory.peak / 2**20),
        "passed": outcome.excinfo is None,
        "cpus": os.cpu_count(),
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _costs:
        return
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(OUTPUT.read_text()) if OUTPUT.is_file() else {}
    OUTPUT.write_text(json.dumps({**previous, **_costs}, indent=2, sort_keys=True) + "\n")
