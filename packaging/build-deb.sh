#!/usr/bin/env bash
# Builds build/agentwatch_<version>_<arch>.deb with dpkg-deb (`make deb`).
#
# Writes nothing outside the repository's build/ directory: the sources are staged in
# build/deb/src, pip's cache and temporary files are kept under build/, and the host's
# pip configuration is ignored. Needs the development environment (.venv, made by
# `make setup`): the dependencies are pinned to the versions installed there.
#
# The package holds:
#   /opt/agentwatch/wheels/       agentwatch's wheel and its dependencies' (pinned),
#                                 with requirements.txt; the postinst builds
#                                 /opt/agentwatch/venv from them alone
#   /usr/bin/agentwatch           -> /opt/agentwatch/venv/bin/agentwatch
#   /lib/systemd/system/agentwatch.service
#   /etc/agentwatch/config.toml   (conffile)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$here/.venv}
OUT=${OUT:-$here/build}
PYTHON=${PYTHON:-/usr/bin/python3}
MAINTAINER=${DEB_MAINTAINER:-agentwatch developers <root@localhost>}

[ -x "$VENV/bin/python" ] || {
    echo "build-deb: no development environment in $VENV (make setup makes it)" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "build-deb: dpkg-deb is missing" >&2; exit 1; }

version=$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$here/pyproject.toml")
arch=$(dpkg --print-architecture)
pyver=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
syspyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$pyver" = "$syspyver" ] || {
    echo "build-deb: $VENV runs Python $pyver but $PYTHON is $syspyver: the wheels must match the Python the package installs into" >&2
    exit 1; }
deb="$OUT/agentwatch_${version}_${arch}.deb"
work="$OUT/deb"
root="$work/root"
wheels="$root/opt/agentwatch/wheels"

echo "build-deb: agentwatch $version for $arch (Python $pyver)"
rm -rf "$work"
mkdir -p "$work/tmp" "$work/src" "$wheels" "$OUT/pip-cache"
# pip: only its cache and temporary files under build/, not the host's configuration.
for v in $(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
export TMPDIR="$work/tmp" PIP_CACHE_DIR="$OUT/pip-cache" PIP_CONFIG_FILE=/dev/null \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
pip=("$VENV/bin/python" -m pip)

# 1. agentwatch's wheel, from a staged copy of the sources (nothing is written in the
#    work tree: no egg-info, no build/lib outside build/).
cp -a "$here/pyproject.toml" "$here/README.md" "$work/src/"
for pkg in probes collector detectors response service; do
    cp -a "$here/$pkg" "$work/src/"
done
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
# Every Python package of the tree must be in the wheel: when pyproject.toml's explicit
# `packages` list misses a subpackage, the staged copy lists them all, with a warning.
"$PYTHON" - "$work/src" <<'PY'
import re, sys, tomllib
from pathlib import Path
src = Path(sys.argv[1])
py = src / "pyproject.toml"
text = py.read_text()
listed = tomllib.loads(text).get("tool", {}).get("setuptools", {}).get("packages")
if listed is not None:
    top = sorted({p.split(".")[0] for p in listed})
    found = sorted(".".join(d.relative_to(src).parts) for t in top
                   for d in [src / t, *(src / t).rglob("*")]
                   if d.is_dir() and (d / "__init__.py").is_file())
    missing = [p for p in found if p not in listed]
    if missing:
        print(f"build-deb: WARNING: pyproject.toml [tool.setuptools] packages misses "
              f"{', '.join(missing)}: added in the staged copy only; fix pyproject.toml",
              file=sys.stderr)
        new = "packages = [" + ", ".join(f'"{p}"' for p in found) + "]"
        text, n = re.subn(r"(?m)^packages\s*=\s*\[[^\]]*\]", new, text, count=1)
        if n != 1:
            sys.exit("build-deb: cannot rewrite the packages list of the staged pyproject.toml")
        py.write_text(text)
PY
"${pip[@]}" wheel --quiet --no-deps --wheel-dir "$wheels" "$work/src"
awwheel=$(ls "$wheels"/agentwatch-"$version"-*.whl)

# The wheel must carry every module, BPF C file and header of the tree.
"$PYTHON" - "$awwheel" "$work/src" <<'PY'
import sys, zipfile
from pathlib import Path
whl, src = sys.argv[1], Path(sys.argv[2])
names = set(zipfile.ZipFile(whl).namelist())
want = sorted(str(p.relative_to(src)) for t in ("probes", "collector", "detectors", "response", "service")
              for pat in ("*.py", "*.bpf.c", "*.h") for p in (src / t).rglob(pat))
missing = [w for w in want if w not in names]
if missing:
    sys.exit(f"build-deb: the wheel lacks {len(missing)} files: {', '.join(missing[:10])}")
print(f"build-deb: {Path(whl).name}: {len(want)} source files, "
      f"{sum(n.endswith('.bpf.c') for n in names)} BPF C files, "
      f"{sum(n.endswith('.h') for n in names)} headers")
PY

# 2. The dependencies' wheels, pinned to the development environment's versions.
"${pip[@]}" freeze --exclude-editable --all | grep -E '^[A-Za-z0-9._-]+==' > "$work/pins.txt"
"$PYTHON" - "$here/pyproject.toml" > "$work/deps.txt" <<'PY'
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))
PY
"${pip[@]}" wheel --quiet --prefer-binary --wheel-dir "$wheels" \
    --constraint "$work/pins.txt" --requirement "$work/deps.txt"
# Every wheel must be the pinned version; requirements.txt names them all, exactly.
"$PYTHON" - "$wheels" "$work/pins.txt" "$version" <<'PY'
import re, sys
from pathlib import Path
wheels, pins, version = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
def norm(n): return re.sub(r"[-_.]+", "-", n).lower()
pinned = {norm(n): v for n, v in (l.split("==", 1) for l in pins.read_text().split())}
reqs = []
for w in sorted(wheels.glob("*.whl")):
    name, ver = w.name.split("-")[:2]
    if norm(name) == "agentwatch":
        reqs.insert(0, f"agentwatch=={version}")
        continue
    if pinned.get(norm(name)) != ver:
        sys.exit(f"build-deb: {w.name} is not the version of the development environment "
                 f"({pinned.get(norm(name), 'not installed there')})")
    reqs.append(f"{name}=={ver}")
(wheels / "requirements.txt").write_text("\n".join(reqs) + "\n")
print(f"build-deb: {len(reqs)} wheels: {' '.join(reqs)}")
PY

# 3. The file system tree.
install -D -m 0644 "$here/packaging/agentwatch.service" "$root/lib/systemd/system/agentwatch.service"
install -D -m 0644 "$here/packaging/config.toml" "$root/etc/agentwatch/config.toml"
mkdir -p "$root/usr/bin"
ln -s /opt/agentwatch/venv/bin/agentwatch "$root/usr/bin/agentwatch"
chmod 0644 "$wheels"/*

# 4. Control files.
mkdir -p "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
pymajor=${pyver%%.*}; pyminor=${pyver#*.}
# The wheels of compiled dependencies are built for this Python version alone.
pydeps="python3 (>= $pyver), python3 (<< $pymajor.$((pyminor + 1)))"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/g" -e "s/@INSTALLED_SIZE@/$size/" \
    -e "s/@PYTHON_DEPENDS@/$pydeps/" -e "s|^Maintainer: .*|Maintainer: $MAINTAINER|" \
    "$here/packaging/deb/control.in" > "$root/DEBIAN/control"
install -m 0644 "$here/packaging/deb/conffiles" "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$here/packaging/deb/$script" "$root/DEBIAN/$script"
done

rm -f "$deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
rm -rf "$work/tmp"
echo "build-deb: $deb ($(du -h "$deb" | cut -f1))"
