"""The default catalogue: importing this package registers every detector.

One module per family; each detector is a class with a `spec` (metadata, defaults, the
event kinds it reads, its kernel half if it has one) and a pure `check(ctx, event)`.
Every module of this package is imported, in name order (which is the order of the
catalogue in the config and in docs/detectors.md), so a new alert-only detector is one
file here (or a class in a family's file) plus its fixtures under
tests/fixtures/detectors/<id>/; docs/detectors.md is then regenerated from the specs
(`python -m service.docs`). A new kernel rule is its spec's `kernel` (names from
probes/rules.py) plus at most one C branch. Shared helpers are in `common`.
"""

import importlib
import pkgutil

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_mod}")
