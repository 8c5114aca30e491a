"""Fetch the ipywidgets JavaScript from npm into ``book/_vendor`` so widgets render in the offline HTML.

The static book embeds each widget's state (ipywidgets 8: state format 2, ``@jupyter-widgets/controls``
2.0.0, ``@jupyter-widgets/output`` 1.0.0); ``@jupyter-widgets/html-manager`` 1.0.x renders exactly
that format, and 1.0.6 is the version myst-nb itself would load from a CDN. The tarballs are pinned
by their npm integrity (SHA-512), checked before anything is unpacked.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "book" / "_vendor"
PACKAGES = {
    "@jupyter-widgets/html-manager@1.0.6":
        "sha512-+Mn+Ra8wyIHrYaUpfmf9A3dsLkt/NuwzPQN8sthdxBD35VV5cOJbpmgMhNR27n/rmP3mKyEe0PWCJrtZrXTXDQ==",
    "requirejs@2.3.6":
        "sha512-ipEzlWQe6RK3jkzikgCupiTbTvm4S0/CAU5GlgptkN5SO6F3u0UD0K18wy6ErDqiCyP4J4YYe1HuAShvsxePLg==",
}
# What the page loads: the AMD embedder, the library it requires, and the icon fonts its CSS names.
WIDGET_FILES = ("embed-amd.js", "libembed-amd.js", "embed.js.LICENSE.txt")
FONT_SUFFIXES = (".woff2", ".woff", ".ttf", ".eot", ".svg")
STAMP = ".versions"


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
                           "so the widget JavaScript can be fetched.") from err
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"`npm pack {spec}` failed:\n{err.stderr}") from err
    tarball = folder / out.strip().splitlines()[-1]
    if integrity(tarball) != PACKAGES[spec]:
        raise RuntimeError(f"{tarball.name} does not match its pinned integrity {PACKAGES[spec]}.")
    return tarball


def unpack(tarball: Path, members: dict[str, str], folder: Path) -> None:
    """Copy the named ``package/...`` members of a tarball to their targets under ``folder``."""
    with tarfile.open(tarball) as tar:
        for member, target in members.items():
            source = tar.extractfile(member)
            if source is None:
                raise RuntimeError(f"{tarball.name} has no file {member}.")
            path = folder / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(source.read())


def widget_members(tarball: Path) -> dict[str, str]:
    """The files of the html-manager package the page needs, mapped to ``widgets/<name>``."""
    with tarfile.open(tarball) as tar:
        names = [m.name for m in tar.getmembers() if m.name.startswith("package/dist/")]
    wanted = [n for n in names if Path(n).name in WIDGET_FILES or Path(n).suffix in FONT_SUFFIXES]
    return {n: f"widgets/{Path(n).name}" for n in wanted}


def vendor(target: Path = VENDOR) -> Path:
    """Fill ``target`` with require.js and the widget embedder (skipped when already up to date)."""
    stamp = "\n".join(f"{spec} {sri}" for spec, sri in PACKAGES.items())
    if (target / STAMP).is_file() and (target / STAMP).read_text() == stamp:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manager = fetch("@jupyter-widgets/html-manager@1.0.6", tmp)
        requirejs = fetch("requirejs@2.3.6", tmp)
        staged = tmp / "vendor"
        unpack(manager, widget_members(manager), staged)
        unpack(requirejs, {"package/require.js": "require.js"}, staged)
        (staged / STAMP).write_text(stamp)
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), str(target))
    return target


if __name__ == "__main__":
    print(f"widget JavaScript in {vendor().relative_to(ROOT)}")
    sys.exit(0)
