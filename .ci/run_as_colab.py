"""Execute a chapter as a Colab runtime would, in the environment of the Python that runs this script.

The chapter's install cell runs as on Colab (``google.colab`` imported, ``%pip install companion``),
with the repository's URL replaced by a built wheel; a last cell checks that the kernel is this
environment's interpreter and imports ``companion`` from it. Used by ``.ci/wheel_check.sh``:

    python .ci/run_as_colab.py book/getting_started.md WHEEL OUT.ipynb
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jupytext
import nbclient
import nbformat

REPOSITORY = "git+https://github.com/hands-on-vision/book"
COLAB_GUARD = '"google.colab" in sys.modules'
PRETEND_COLAB = 'import sys, types\n\nsys.modules["google.colab"] = types.ModuleType("google.colab")'
CHECK_KERNEL = f"""import sys

import ipywidgets

import companion

assert sys.prefix == {sys.prefix!r}, sys.prefix
assert companion.__file__.startswith(sys.prefix), companion.__file__
print("kernel:", sys.executable, "| ipywidgets", ipywidgets.__version__)"""


def as_on_colab(nb: nbformat.NotebookNode, wheel: Path) -> nbformat.NotebookNode:
    """The notebook with its install cell pointed at ``wheel``, run as if on Colab, and a kernel check."""
    install = next(c for c in nb.cells if c.cell_type == "code")
    if COLAB_GUARD not in install.source or install.source.count(REPOSITORY) != 1:
        raise ValueError(f"the first code cell is not the Colab install cell:\n{install.source}")
    install.source = install.source.replace(REPOSITORY, wheel.resolve().as_uri())
    nb.cells.insert(nb.cells.index(install), nbformat.v4.new_code_cell(PRETEND_COLAB))
    nb.cells.append(nbformat.v4.new_code_cell(CHECK_KERNEL))
    return nb


def outputs(nb: nbformat.NotebookNode, kind: str) -> list[dict]:
    """Outputs of one kind: "error", "stderr" or "widget" (a widget view)."""
    every = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    if kind == "stderr":
        return [o for o in every if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    if kind == "widget":
        return [o for o in every if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    return [o for o in every if o.get("output_type") == kind]


def main(chapter: str, wheel: str, out: str) -> int:
    nb = as_on_colab(jupytext.read(chapter), Path(wheel))
    start = time.perf_counter()
    # kernel "python3" is this interpreter: jupyter_client starts it with sys.executable
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(Path(out).parent)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, out)
    code = [c for c in nb.cells if c.cell_type == "code"]
    print(f"executed {len(code)} code cells in {time.perf_counter() - start:.0f} s:",
          f"{len(outputs(nb, 'error'))} errors, {len(outputs(nb, 'stderr'))} stderr outputs,",
          f"{len(outputs(nb, 'widget'))} widget views")
    print("".join(code[-1].outputs[0]["text"]).strip())
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
