"""How recorded states are stored: the on-disk format, the writer and the reader.

- `format`: names, constants and layout of version 2, the index (built and parsed);
- `gradients`: the gradient arrays' kinds, index version and reach;
- `extras`: the small tensors beside the arrays, min/max pyramids and forget means;
- `ranged`: reading an array file, in checked byte ranges;
- `jsonsafe`: JSON from a logdir, its size and nesting bounded; `errors`: what fails;
- `writer`: `StateWriter`, with `plan` (a record checked) and `arrayfile` (written);
- `convert`: states to host numpy arrays at the stored dtype;
- `event_file`: TensorBoard event files, written and read;
- `reader`: `read_states`, a logdir read without TensorBoard;
- `legacy`: version 1 records; `remote`: logdirs on URLs.
"""
