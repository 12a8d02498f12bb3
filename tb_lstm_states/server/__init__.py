"""The TensorBoard backend of the LSTM States tab.

- `loader`: `StatesLoader`, the `tensorboard_plugins` entry point (flags);
- `routes`: `StatesPlugin`, the HTTP routes (docs/http_api.md);
- `unit_routes`: the routes that say what a unit means (`units`, `match`, `search`);
- `guard`: no route answers 500;
- `source`: the steps and records of a tag, through the data provider;
- `views`, `overview`, `projection`, `compare`, `search`: what the routes compute;
- `limits`: what one request may read or compute on;
- `listing`: which steps the data provider lists, both format versions;
- `records`: one step, ready to serve, either version;
- `arrays`: checked, cached ranged reads of version 2 array files;
- `events`: checked reads of version 1 records from the event files;
- `descriptions`: the Markdown descriptions, rendered;
- `work`: bounded pools for heavy work;
- `params`: query parameters and JSON replies.
"""
