"""The default catalogue: importing this package registers every detector.

One module per family; each detector is a class with a `spec` (metadata, defaults) and a
pure `check(ctx, event)`. docs/detectors.md is generated from these specs.
"""

from detectors.catalog import (
    escape,  # noqa: F401
    files,  # noqa: F401
    integrity,  # noqa: F401
    network,  # noqa: F401
    procs,  # noqa: F401
)
