#!/usr/bin/env bash
# Idempotent host set-up for agentwatch, used by `make run`, `make test` and the rest.
#  1. apt packages from packaging/apt-packages.txt (and APT_LISTS), installed only when missing
#     (the headers package is chosen for this machine's architecture);
#  2. a virtual environment (VENV) with the Python dependencies, built from the
#     distribution's Python so that Debian's `bcc` module matches it;
#  3. Debian's bcc module linked into that environment alone: the rest of the system
#     site-packages stays invisible to it.
# A second run changes nothing and prints nothing but a one-line "ready".
#
# VENV_ONLY=1 (`make lint`, `make test-unit`): step 2 alone, with no root, apt or npm;
# Debian's bcc is linked in only if the system Python has it (the unit tests never need it).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$here/.venv}
PYTHON=${PYTHON:-/usr/bin/python3}
EXTRAS=${EXTRAS:-test}
# Package lists to satisfy (make bench adds packaging/apt-bench-packages.txt).
APT_LISTS=${APT_LISTS:-$here/packaging/apt-packages.txt}
VENV_ONLY=${VENV_ONLY:-0}
[ -x "$PYTHON" ] || [ "$VENV_ONLY" != 1 ] || PYTHON=$(command -v python3)

if [ "$VENV_ONLY" != 1 ]; then
  arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
  want=()
  while read -r pkg; do
    pkg=${pkg%%#*}; pkg=${pkg//[[:space:]]/}
    [ -n "$pkg" ] || continue
    [ "$pkg" = linux-headers-amd64 ] && pkg="linux-headers-$arch"
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      want+=("$pkg")
    fi
  done < <(cat $APT_LISTS)
  if [ ${#want[@]} -gt 0 ]; then
    echo "setup: installing ${want[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
  fi
fi

stamp="$VENV/.agentwatch-setup"
# The stamp records what the environment was built from; any change rebuilds it.
sig=$(cat "$here/pyproject.toml" "$here/packaging/setup-host.sh" | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sig-$EXTRAS" ]; then
  echo "setup: building virtual environment in $VENV"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$here[$EXTRAS]"
  echo "$sig-$EXTRAS" > "$stamp"
fi
# Debian's bcc, linked on every run (not only when the environment is built): an
# environment made by VENV_ONLY before python3-bpfcc was installed gets it later.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if bccdir=$(/usr/bin/python3 -c 'import bcc, os; print(os.path.dirname(bcc.__file__))' \
    2>/dev/null); then
  [ "$(readlink "$site/bcc" 2>/dev/null)" = "$bccdir" ] || ln -sfn "$bccdir" "$site/bcc"
elif [ "$VENV_ONLY" != 1 ]; then
  echo "setup: Debian's bcc module (python3-bpfcc) is missing" >&2; exit 1
fi
# Anthropic's sandbox-runtime (srt), for the end-to-end tests and demos: a pinned version
# from the npm registry, installed into the project (not globally).
SRT_VERSION=${SRT_VERSION:-0.0.83}
SRT_DIR=${SRT_DIR:-$here/.tools/srt}
if [ "${WITH_SRT:-1}" = 1 ] && [ "$VENV_ONLY" != 1 ]; then
  if ! command -v npm >/dev/null; then
    echo "setup: installing nodejs and npm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  pkg_json="$SRT_DIR/node_modules/@anthropic-ai/sandbox-runtime/package.json"
  have=""
  [ -f "$pkg_json" ] && have=$(sed -n 's/^ *"version": *"\(.*\)",*$/\1/p' "$pkg_json" | head -n1)
  if [ "$have" != "$SRT_VERSION" ]; then
    echo "setup: installing @anthropic-ai/sandbox-runtime@$SRT_VERSION in $SRT_DIR"
    mkdir -p "$SRT_DIR"
    npm install --prefix "$SRT_DIR" --no-audit --no-fund --loglevel=error \
      "@anthropic-ai/sandbox-runtime@$SRT_VERSION" >/dev/null
  fi
fi

need="orjson, psutil, pyroute2, typer"
[ "$VENV_ONLY" = 1 ] || need="bcc, $need"
"$VENV/bin/python" -c "import $need" \
  || { echo "setup: the virtual environment in $VENV is broken; remove it and retry" >&2; exit 1; }
echo "setup: ready ($VENV)"
