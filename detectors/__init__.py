"""Detectors: pure functions of (session state, event) -> findings.

Not built yet: the engine and the catalogue in ../shared/DESIGN.md are the next issues'
work. Nothing imports this package today.
"""
