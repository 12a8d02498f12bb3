"""The TensorBoard entry point: `tb_lstm_states.plugin:StatesLoader` (setup.py).

The backend lives in `tb_lstm_states.server`; its HTTP API is docs/http_api.md.
"""

from tb_lstm_states.server.loader import DEFAULT_CACHE_MB, StatesLoader
from tb_lstm_states.server.routes import ALL_STEPS, PROJECTION_CAPS, StatesPlugin

__all__ = ["ALL_STEPS", "DEFAULT_CACHE_MB", "PROJECTION_CAPS", "StatesLoader", "StatesPlugin"]
