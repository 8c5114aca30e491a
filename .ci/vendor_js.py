"""Fetch the JavaScript the static book needs offline from npm into ``book/_vendor``.

- ``@jupyter-widgets/html-manager`` + ``requirejs`` render the widget state embedded in the pages.
  ipywidgets 8 writes state format 2 (``@jupyter-widgets/controls`` 2.0.0, ``output`` 1.0.0);
  html-manager 1.0.x renders exactly that, and 1.0.6 is the version myst-nb itself loads from a CDN.
- ``mathjax`` 3 typesets the equations (Sphinx would load it from a CDN).

Each tarball is pinned by its npm integrity (SHA-512), checked before anything is unpacked.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "book" / "_vendor"
STAMP = ".versions"


def _widgets(name: str) -> str | None:
    """The page loads the AMD embedder, the library it requires and the icon fonts its CSS names."""
    path = Path(name)
    if name.startswith("package/dist/") and (
            path.name in ("embed-amd.js", "libembed-amd.js", "embed.js.LICENSE.txt")
            or path.suffix in (".woff2", ".woff", ".ttf", ".eot", ".svg")):
        return f"widgets/{path.name}"
    return None


def _requirejs(name: str) -> str | None:
    return "require.js" if name == "package/require.js" else None


def _mathjax(name: str) -> str | None:
    """The combined TeX component, its fonts and the extensions it loads on demand."""
    for keep in ("package/es5/tex-mml-chtml.js", "package/es5/output/chtml/fonts/woff-v2/",
                 "package/es5/input/tex/extensions/", "package/LICENSE"):
        if name == keep or (keep.endswith("/") and name.startswith(keep)):
            return "mathjax/" + name.removeprefix("package/es5/").removeprefix("package/")
    return None


PACKAGES: dict[str, tuple[str, Callable[[str], str | None]]] = {
    "@jupyter-widgets/html-manager@1.0.6": (
        "sha512-+Mn+Ra8wyIHrYaUpfmf9A3dsLkt/NuwzPQN8sthdxBD35VV5cOJbpmgMhNR27n/rmP3mKyEe0PWCJrtZrXTXDQ==",
        _widgets),
    "requirejs@2.3.6": (
        "sha512-ipEzlWQe6RK3jkzikgCupiTbTvm4S0/CAU5GlgptkN5SO6F3u0UD0K18wy6ErDqiCyP4J4YYe1HuAShvsxePLg==",
        _requirejs),
    "mathjax@3.2.2": (
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        _mathjax),
}


def integrity(path: Path) -> str:
    """The npm integrity string (``sha512-<base64>``) of a file."""
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch(spec: str, folder: Path) -> Path:
    """Download one npm tarball with ``npm pack`` and check its integrity."""
    try:
        out = subprocess.run(["npm", "pack", spec, "--silent", "--pack-destination", str(folder)],
                             check=True, capture_output=True, text=True).stdout
    except FileNotFoundError as err:
        raise RuntimeError("npm is not installed: install Node.js/npm (e.g. `apt-get install -y npm`) "
                           "so the book's JavaScript can be fetched.") from err
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"`npm pack {spec}` failed:\n{err.stderr}") from err
    tarball = folder / out.strip().splitlines()[-1]
    expected = PACKAGES[spec][0]
    if integrity(tarball) != expected:
        raise RuntimeError(f"{tarball.name} does not match its pinned integrity {expected}.")
    return tarball


def unpack(tarball: Path, target_of: Callable[[str], str | None], folder: Path) -> int:
    """Copy the tarball's files that ``target_of`` names into ``folder``; returns how many."""
    count = 0
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            target = target_of(member.name) if member.isfile() else None
            if target is None:
                continue
            path = folder / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tar.extractfile(member).read())
            count += 1
    if count == 0:
        raise RuntimeError(f"{tarball.name} holds none of the expected files.")
    return count


def vendor(target: Path = VENDOR) -> Path:
    """Fill ``target`` with the pinned JavaScript (skipped when already up to date)."""
    stamp = "\n".join(f"{spec} {sri}" for spec, (sri, _) in PACKAGES.items())
    if (target / STAMP).is_file() and (target / STAMP).read_text() == stamp:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "vendor"
        for spec, (_, target_of) in PACKAGES.items():
            unpack(fetch(spec, Path(tmp)), target_of, staged)
        (staged / STAMP).write_text(stamp)
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), str(target))
    return target


if __name__ == "__main__":
    print(f"JavaScript for the offline book in {vendor().relative_to(ROOT)}")
    sys.exit(0)
