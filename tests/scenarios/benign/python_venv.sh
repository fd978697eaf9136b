# expect: none
# about: a virtual environment made in the workspace (with pip), then used
set -e
"$PY" -m venv .venv
.venv/bin/python -c 'import sys; assert sys.prefix.endswith(".venv")'
.venv/bin/pip --version > /dev/null
