"""The inputs of S5's agent workloads (bench/workloads.py), generated locally: a C
project, a directory of small wheels and a git repository. Nothing is downloaded.

Each generator is deterministic (the same files for the same arguments) and returns
what it made, so that tests/test_bench_workloads.py can check the counts without a
timing or a sandbox.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import zipfile
from pathlib import Path

C_FILES = 200     # the issue: a C project of at least 200 files
C_HEADERS = 20
WHEELS = 20
GIT_FILES = 5000  # the issue: a local repository of at least 5,000 files


# ------------------------------------------------------------------------------ C project
def c_project(root: Path, n_files: int = C_FILES, n_headers: int = C_HEADERS) -> dict[str, int]:
    """ROOT/Makefile, ROOT/include/hK.h and ROOT/src/fN.c (+ src/main.c): each .c file
    includes three of the headers and <stdio.h>/<string.h> (gcc probes the include path
    for each), `make -j2` compiles them to objects and links `prog`. `make clean`
    removes what it builds. Returns the counts of .c and .h files."""
    inc, src = root / "include", root / "src"
    inc.mkdir(parents=True, exist_ok=True)
    src.mkdir(parents=True, exist_ok=True)
    for k in range(n_headers):
        (inc / f"h{k}.h").write_text(
            f"#ifndef H{k}_H\n#define H{k}_H\n#include <stddef.h>\n"
            f"struct s{k} {{ int a; long b; char name[16]; }};\n"
            f"static inline int h{k}_mix(int x) {{ return x * {k + 3} + {k}; }}\n"
            f"#define H{k}_K {k * 7 + 1}\n#endif\n")
    for n in range(n_files):
        hs = sorted({n % n_headers, (n * 7 + 1) % n_headers, (n * 13 + 5) % n_headers})
        body = "".join(f'#include "h{h}.h"\n' for h in hs)
        body += "#include <stdio.h>\n#include <string.h>\n"
        body += f"int f{n}(int x) {{\n    int acc = x;\n"
        for h in hs:
            body += (f"    {{ struct s{h} v; memset(&v, 0, sizeof v); v.a = h{h}_mix(acc);"
                     f" acc += v.a + H{h}_K; }}\n")
        body += "    return acc;\n}\n"
        (src / f"f{n}.c").write_text(body)
    decls = "".join(f"int f{n}(int);\n" for n in range(n_files))
    calls = "".join(f"    acc += f{n}(acc & 0xff);\n" for n in range(n_files))
    (src / "main.c").write_text(f'#include <stdio.h>\n{decls}int main(void) {{\n'
                                f'    int acc = 1;\n{calls}    printf("%d\\n", acc);\n'
                                f'    return 0;\n}}\n')
    (root / "Makefile").write_text(
        "CFLAGS ?= -O1 -Iinclude\n"
        "SRCS := $(wildcard src/*.c)\nOBJS := $(SRCS:.c=.o)\n"
        "prog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n"
        "src/%.o: src/%.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"
        "clean:\n\trm -f prog src/*.o\n.PHONY: clean\n")
    return {"c_files": n_files + 1, "headers": n_headers}


def c_clean(root: Path) -> None:
    """What `make clean` does, from outside the sandbox."""
    (root / "prog").unlink(missing_ok=True)
    for o in (root / "src").glob("*.o"):
        o.unlink()


# ------------------------------------------------------------------------------ wheels
def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()},{len(data)}"


def wheel(out: Path, name: str, version: str = "1.0", modules: int = 5) -> Path:
    """A pure-Python wheel written by hand (a zip of the package and its .dist-info:
    METADATA, WHEEL and RECORD with every file's hash). Returns its path."""
    dist = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {f"{name}/__init__.py": f'"""{name}"""\nVERSION = "{version}"\n'
                               .encode()}
    for m in range(modules):
        files[f"{name}/mod{m}.py"] = (f"def f{m}(x):\n    return x + {m}\n\n"
                                      f"TABLE = {list(range(m * 10))!r}\n").encode()
    files[f"{dist}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 f"Summary: agentwatch bench wheel\n").encode()
    files[f"{dist}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: agentwatch-bench\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    files[f"{dist}/top_level.txt"] = f"{name}\n".encode()
    record = "".join(f"{p},{_record_hash(d)}\n" for p, d in files.items())
    record += f"{dist}/RECORD,,\n"
    files[f"{dist}/RECORD"] = record.encode()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for p, d in files.items():
            z.writestr(p, d)
    return path


def wheel_names(n: int = WHEELS) -> list[str]:
    return [f"awbench_pkg{i}" for i in range(n)]


def wheels(out: Path, n: int = WHEELS) -> list[Path]:
    """N wheels awbench_pkg0..N-1 in OUT (a `pip install --no-index --find-links OUT`)."""
    return [wheel(out, name) for name in wheel_names(n)]


# ------------------------------------------------------------------------------ git repo
def git_repo(root: Path, n_files: int = GIT_FILES, per_dir: int = 100) -> int:
    """A git repository at ROOT with N_FILES small files in directories of PER_DIR, in
    one commit. Returns the number of files committed (from `git ls-files`)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        d = root / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(exist_ok=True)
        (d / f"file{i:05d}.txt").write_text(f"file {i}\n" + "x" * (i % 200) + "\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@invalid",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root)}
    def git(*args: str) -> bytes:
        return subprocess.run(["git", "-C", str(root), *args], env=env, check=True,
                              capture_output=True).stdout
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "bench repository")
    return len(git("ls-files", "-z").split(b"\0")) - 1
