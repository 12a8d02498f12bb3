"""The TensorBoard backend of the LSTM States tab.

- `loader`: `StatesLoader`, the `tensorboard_plugins` entry point (flags);
- `routes`: `StatesPlugin`, the HTTP routes (docs/http_api.md);
- `listing`: which steps the data provider lists, both format versions;
- `records`: one step, ready to serve, either version;
- `arrays`: checked, cached ranged reads of version 2 array files;
- `params`: query parameters and JSON replies.
"""
