"""`StatesLoader`: the `tensorboard_plugins` entry point.

Before TensorBoard builds its data provider, `fix_flags` keeps every `lstm_states`
step (TensorBoard keeps 10 per tag of a plugin it does not know) unless the user
passed `--samples_per_plugin lstm_states=N`, and lets the Python loader poll every
event file of a run (`--reload_multifile=true`) unless the user set that flag. It
adds one flag, `--lstm_states_cache_mb` (default 256): the memory for array bytes
read from the logdir and the views derived from them.
"""

from tensorboard.plugins import base_plugin

from tb_lstm_states import metadata
from tb_lstm_states.server import routes

DEFAULT_CACHE_MB = routes.DEFAULT_CACHE_MB


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

    def load(self, context):
        flags = context.flags
        cache_mb = getattr(flags, "lstm_states_cache_mb", DEFAULT_CACHE_MB) if flags else DEFAULT_CACHE_MB
        return routes.StatesPlugin(context, cache_bytes=int(cache_mb) << 20)
