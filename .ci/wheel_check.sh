#!/usr/bin/env bash
# Install the package as a Colab notebook does, from a clean environment, and run Getting started there:
#   1. build the companion wheel from the tracked files; check that it carries the committed checkpoints
#   2. create a fresh virtual environment; install torch, the wheel and what Colab ships beside it
#      (ipywidgets 7.7.x, ipykernel), plus jupytext and nbclient to run the chapter
#   3. import companion from the wheel (not from the working tree) and load its checkpoints
#   4. convert book/getting_started.md to .ipynb and execute it in the smoke world with that
#      environment's kernel, its install cell run as on Colab (%pip install, from the wheel)
# Prints the time of each stage; exits non-zero if any failed. Needs about 6.5 GB of disk (torch's
# CUDA libraries); the environment is deleted afterwards unless --keep is given.
#
#   bash .ci/wheel_check.sh [--keep]      # PYTHON=python3.11 by default (torch's wheels are cp311)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

keep=0
for arg in "$@"; do
  case $arg in
    --keep) keep=1 ;;
    *) echo "usage: bash .ci/wheel_check.sh [--keep]" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3.11}
work=$(mktemp -d "${TMPDIR:-/tmp}/wheel_check.XXXXXX")
if [ "$keep" = 0 ]; then trap 'rm -rf "$work"' EXIT; else echo "keeping $work"; fi
quiet_pip() {  # pip without its notes about index folders that this machine's pip configuration names
  "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}

start_all=$SECONDS
timings=()
stage() {  # stage NAME COMMAND...: run and time one stage; stop at the first failure
  local name=$1 start=$SECONDS
  shift
  echo "=== $name"
  if ! "$@"; then
    timings+=("$(printf '%-40s %5d s  FAILED' "$name" $((SECONDS - start)))")
    printf '%s\n' "${timings[@]}"
    exit 1
  fi
  timings+=("$(printf '%-40s %5d s  ok' "$name" $((SECONDS - start)))")
}

build_wheel() {
  # from a copy of the files git tracks (as a clone has them, with local edits): nothing stale from an
  # in-tree build/ or an untracked file gets into the wheel, and the working tree stays clean
  mkdir -p "$work/src"
  git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work/src" || return 1
  quiet_pip "$python" -m pip wheel "$work/src" --no-deps -q -w "$work/dist" || return 1
  wheel=$(ls "$work"/dist/companion-*.whl)
  echo "built $(basename "$wheel")"
  # every checkpoint that git tracks under companion/ must be in the wheel, and nothing outside it
  git ls-files 'companion/*.pt' | "$python" -c '
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
tracked = sys.stdin.read().split()
missing = [t for t in tracked if t not in names]
stray = sorted({n.split("/")[0] for n in names} - {"companion"} - {n.split("/")[0] for n in names if ".dist-info/" in n})
print(f"wheel: {len(names)} files, checkpoints {len(tracked) - len(missing)} of {len(tracked)}")
if missing or stray:
    sys.exit(f"missing from the wheel: {missing}; unexpected top-level entries: {stray}")
' "$wheel"
}

make_venv() {
  "$python" -m venv "$work/venv" || return 1
  quiet_pip "$work/venv/bin/python" -m pip install -q \
    "torch==2.14.1" "torchvision==0.29.1" "$wheel" "ipywidgets==7.7.*" ipykernel jupytext nbclient || return 1
  "$work/venv/bin/python" -m pip check
}

check_import() {
  # from an empty folder, so that the working tree's companion/ cannot be picked up instead
  (cd "$work" && env -u PYTHONPATH "$work/venv/bin/python" -c '
import sys
from importlib import metadata, resources

import ipywidgets
import torch

import companion

assert companion.__file__.startswith(sys.prefix), f"companion imported from {companion.__file__}"
assert ipywidgets.__version__.startswith("7.7."), ipywidgets.__version__
found = sorted(str(p.relative_to(resources.files("companion")))
               for p in resources.files("companion").glob("*/checkpoints/*.pt"))
assert found, "no checkpoints inside the installed package"
for path in found:  # each one loads
    torch.load(resources.files("companion") / path, map_location="cpu", weights_only=False)
print("companion", metadata.version("companion"), "from the wheel | ipywidgets", ipywidgets.__version__,
      "| torch", torch.__version__, "| checkpoints load:", *found)
')
}

run_chapter() {
  (cd "$work/run" && env -u PYTHONPATH COMPANION_PROFILE=smoke COMPANION_CACHE="$work/cache" MPLBACKEND=agg \
    "$work/venv/bin/python" "$repo/.ci/run_as_colab.py" "$repo/book/getting_started.md" "$wheel" \
    "$work/run/getting_started.ipynb")
}

mkdir -p "$work/run"
stage "build the wheel" build_wheel
stage "fresh venv: torch, wheel, ipywidgets 7.7" make_venv
stage "import companion from the wheel" check_import
stage "Getting started in the smoke world" run_chapter
echo "=== stage times (wall clock)"
printf '%s\n' "${timings[@]}"
printf '%-40s %5d s\n' "total" $((SECONDS - start_all))
