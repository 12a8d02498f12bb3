"""`StatesLoader`: the `tensorboard_plugins` entry point.

Before TensorBoard builds its data provider, `fix_flags` keeps every `lstm_states`
step (TensorBoard keeps 10 per tag of a plugin it does not know) unless the user
passed `--samples_per_plugin lstm_states=N`, and lets the Python loader poll every
event file of a run (`--reload_multifile=true`) unless the user set that flag. It
adds two flags: `--lstm_states_cache_mb` (default 256), the memory for array bytes
read from the logdir and the views derived from them; and `--lstm_states_workers`
(default 2), the threads that compute projections (`work.py`).
"""

from tensorboard.plugins import base_plugin

from tb_lstm_states import metadata
from tb_lstm_states.server import routes, work

DEFAULT_CACHE_MB = routes.DEFAULT_CACHE_MB
DEFAULT_WORKERS = work.DEFAULT_WORKERS
MAX_WORKERS = 64


class StatesLoader(base_plugin.TBLoader):
    """Loads `StatesPlugin` after adjusting the flags it needs."""

    def define_flags(self, parser):
        group = parser.add_argument_group(metadata.PLUGIN_NAME)
        group.add_argument(
            "--lstm_states_cache_mb",
            metavar="MB",
            type=int,
            default=DEFAULT_CACHE_MB,
            help="Memory for lstm_states arrays read from the logdir and views derived "
            "from them (binned views, projections, unit statistics), in MiB; nothing "
            "else holds arrays. (default: %(default)s)",
        )
        group.add_argument(
            "--lstm_states_workers",
            metavar="N",
            type=int,
            default=DEFAULT_WORKERS,
            help="Threads that compute lstm_states projections (PCA, t-SNE, UMAP); unit "
            "statistics and descriptions have one more of their own. Identical requests "
            "share one computation; more requests wait their turn. (default: %(default)s)",
        )

    def fix_flags(self, flags):
        """Keeps every `lstm_states` step and polls every event file, unless set."""
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            # 0 means "keep all" to both loaders; a user's own value wins.
            samples.setdefault(metadata.PLUGIN_NAME, 0)
        elif not samples:
            flags.samples_per_plugin = {metadata.PLUGIN_NAME: 0}
        if getattr(flags, "reload_multifile", None) is None:
            # Training writes a StateWriter file beside the SummaryWriter's; the
            # Python loader would otherwise poll only the newest of them.
            flags.reload_multifile = True
        cache_mb = getattr(flags, "lstm_states_cache_mb", DEFAULT_CACHE_MB)
        if not isinstance(cache_mb, int) or cache_mb < 0:
            raise base_plugin.FlagsError(
                "--lstm_states_cache_mb must be a non-negative integer, got %r" % (cache_mb,)
            )
        workers = getattr(flags, "lstm_states_workers", DEFAULT_WORKERS)
        if not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
            raise base_plugin.FlagsError(
                "--lstm_states_workers must be an integer from 1 to %d, got %r"
                % (MAX_WORKERS, workers)
            )

    def load(self, context):
        flags = context.flags
        cache_mb = (
            getattr(flags, "lstm_states_cache_mb", DEFAULT_CACHE_MB) if flags else DEFAULT_CACHE_MB
        )
        workers = (
            getattr(flags, "lstm_states_workers", DEFAULT_WORKERS) if flags else DEFAULT_WORKERS
        )
        return routes.StatesPlugin(context, cache_bytes=int(cache_mb) << 20, workers=int(workers))
