"""`load`: scipy and scikit-learn, imported once under one lock.

They are imported on first use, so that TensorBoard starts fast. The tab's first
page sends its analysis requests at once, and they run on several threads: two
threads importing different parts of scipy at the same time can each see the
package half initialised ("cannot import name ... from partially initialized
module", then "module 'scipy' has no attribute '_lib'" for the rest of the
process). So every analysis calls `load` before its own imports: the first caller
imports them all while any other waits. The plugin also calls it on a background
thread at start, so the first request rarely waits.
"""

import importlib
import threading

MODULES = (
    "scipy.fft",
    "scipy.stats",
    "scipy.optimize",
    "scipy.sparse",
    "scipy.cluster.hierarchy",
    "scipy.spatial.distance",
    "sklearn.decomposition",
)

_lock = threading.Lock()
_loaded = False


def load() -> None:
    """Imports every module of `MODULES` once; returns at once after the first call."""
    global _loaded
    if _loaded:
        return
    with _lock:
        if not _loaded:
            for name in MODULES:
                importlib.import_module(name)
            _loaded = True
