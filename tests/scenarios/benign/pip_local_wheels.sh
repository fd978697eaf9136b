# expect: none
# about: pip installs a local wheel offline (--no-index --find-links) into a venv in the workspace
set -e
"$PY" -m venv .venv
mkdir -p wheels
"$PY" - <<'PY'
# a wheel is a zip with the package, METADATA, WHEEL and RECORD: made here, offline
import base64, hashlib, zipfile
files = {
    "corpuslib/__init__.py": "def add(a, b):\n    return a + b\n",
    "corpuslib-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: corpuslib\nVersion: 1.0\n",
    "corpuslib-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: corpus\n"
                                     "Root-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for name, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
    record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
record.append("corpuslib-1.0.dist-info/RECORD,,")
files["corpuslib-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
with zipfile.ZipFile("wheels/corpuslib-1.0-py3-none-any.whl", "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
PY
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_CACHE_DIR="$WS/.pip-cache"
.venv/bin/pip install -q --no-index --find-links wheels corpuslib
.venv/bin/python -c 'import corpuslib; assert corpuslib.add(1, 1) == 2'
.venv/bin/pip uninstall -q -y corpuslib
