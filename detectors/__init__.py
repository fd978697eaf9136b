"""Detectors: pure functions of (session state, event) -> findings.

`base.py` holds the spec, the registry and the views a detector gets; `engine.py` turns
findings into alerts (exceptions, folding, actions left pending for response/);
`config.py` reads the TOML knobs with every default built in; `catalog/` holds the
detectors, one module per family. Nothing here does I/O or imports anything of the project
but the event schema (collector/events.py): tests/test_architecture.py checks it.
"""
