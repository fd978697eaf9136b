# agentwatch: the two README commands are `make run` and `make test`.
# Both set the host up first (packaging/setup-host.sh, idempotent). `make lint` and
# `make test-unit` need only the virtual environment (setup-venv): no root, apt or npm.
VENV   ?= $(CURDIR)/.venv
PY     := $(VENV)/bin/python
AW     := $(VENV)/bin/agentwatch
# `make demo`: a small tree that reads a file and makes a refused connect, watched with
# `agentwatch run` (override CMD to watch your own command).
CMD    ?= sh -c 'cat /etc/hostname; python3 -c "import socket; socket.socket().connect_ex((\"127.0.0.1\", 9))"'
EVENTS ?= -

.PHONY: setup setup-venv run demo test test-unit lint bench bench-quick soak doctor clean \
	scenarios

setup:
	@VENV=$(VENV) bash packaging/setup-host.sh

# .venv alone, with pip; Debian's bcc linked in only if the host has it.
setup-venv:
	@VENV=$(VENV) VENV_ONLY=1 bash packaging/setup-host.sh

# The agent on built-in defaults: every bubblewrap sandbox on the host (sandbox-runtime's
# included) becomes a session; events as JSON Lines on stdout (EVENTS=FILE to change),
# session lines on stderr; Ctrl-C stops it.
run: setup
	$(AW) doctor
	$(AW) daemon --events $(EVENTS)

demo: setup
	$(AW) run --events $(EVENTS) -- $(CMD)

doctor: setup
	$(AW) doctor

# Everything: the host set up, lint, then every test (markers bpf, slow, e2e and deb
# included; pyproject.toml lists them).
test: setup lint
	$(PY) -m pytest -ra tests

# The tests that load no BPF program: no root, no bcc, no sandbox.
test-unit: setup-venv
	$(PY) -m pytest -ra -m "not bpf" tests

lint: setup-venv
	@echo "lint: ruff and mypy"
	$(PY) -m ruff check probes collector detectors response service tests bench
	$(PY) -m mypy probes collector detectors response service

# The benchmark suite (docs/performance.md): kill latency, then S1-S4 beside the peers
# (bpfcc-tools, bpftrace, libbpf-tools), ending with one summary table. About 10 minutes;
# `make bench-quick` about 3. BENCH_JSON=FILE keeps every figure.
BENCH_JSON ?= bench-results.json
bench: bench-setup
	$(PY) bench/kill_latency.py --trials 20
	$(PY) bench/detect.py
	$(PY) bench/suite.py --json $(BENCH_JSON)
	$(PY) bench/sensors.py --json $(BENCH_SENSORS_JSON) $(BENCH_SENSORS_ARGS)
	$(PY) bench/workloads.py --json $(BENCH_WORKLOADS_JSON) $(BENCH_WORKLOADS_ARGS)

# S5, agent workloads (bench/workloads.py): rg, make -j2, venv+pip+compileall, git clone in
# bubblewrap, untraced, under the default daemon and under the peers; about 10 minutes.
# BENCH_WORKLOADS_ARGS="--quick" for a check, '--daemon-args "--events-level all"' for a
# second daemon column, "--only rg,git" for a subset.
BENCH_WORKLOADS_JSON ?= bench-workloads.json
BENCH_WORKLOADS_ARGS ?=
.PHONY: bench-workloads
bench-workloads: bench-setup
	$(PY) bench/workloads.py --json $(BENCH_WORKLOADS_JSON) $(BENCH_WORKLOADS_ARGS)

# The old sensor (a git ref, default the merge base 62ee690) and this working tree side by
# side in one run (bench/sensors.py, docs/performance.md); 4-7 minutes. E.g.
# BENCH_SENSORS_ARGS="--old-ref REF --write-doc" to compare with REF and rewrite the table.
BENCH_SENSORS_JSON ?= bench-sensors.json
BENCH_SENSORS_ARGS ?=
.PHONY: bench-sensors
bench-sensors: bench-setup
	$(PY) bench/sensors.py --json $(BENCH_SENSORS_JSON) $(BENCH_SENSORS_ARGS)

# User-space cost per event (decode, process table, detectors, JSON Lines): a replay of
# synthesised ring records, no BPF, about 30 s (bench/detect.py; --profile for cProfile).
.PHONY: bench-detect
bench-detect: setup-venv
	$(PY) bench/detect.py

bench-quick: bench-setup
	$(PY) bench/suite.py --quick --json $(BENCH_JSON)

.PHONY: bench-setup
bench-setup:
	@VENV=$(VENV) APT_LISTS="packaging/apt-packages.txt packaging/apt-bench-packages.txt" \
		bash packaging/setup-host.sh

# The attack and benign corpus (tests/scenarios/) in bubblewrap, sandbox-runtime and bare
# under `agentwatch run`: one row per scenario and way, then recall and false positives.
# SCENARIOS_ARGS="--only REGEX --ways bwrap,srt,bare --json FILE" to narrow or record.
SCENARIOS_ARGS ?=
scenarios:
	@VENV=$(VENV) APT_LISTS="packaging/apt-packages.txt packaging/apt-scenario-packages.txt" \
		bash packaging/setup-host.sh
	$(PY) -m tests.scenarios.runner $(SCENARIOS_ARGS)

# Floods, benign work and escapes in bubblewrap sandboxes under the real daemon, with a
# verdict (bench/soak.py): SOAK_SECONDS=600 make soak for a longer one (default 180).
soak: setup
	$(PY) bench/soak.py

# build/agentwatch_<version>_<arch>.deb (docs/packaging.md); writes only under build/.
.PHONY: deb
deb:
	@VENV=$(VENV) bash packaging/build-deb.sh

clean:
	rm -rf $(VENV) build *.egg-info
