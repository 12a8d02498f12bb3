"""Descriptions as the `runs` route serves them: cut, rendered once, never on a poll.

TensorBoard's Markdown sanitizer (`plugin_util.markdown_to_safe_html`) takes time
that grows faster than the text, on some inputs far faster (figures:
benchmarks/serve.py). So:

- a description is cut to its first `format.MAX_DESCRIPTION_CHARS` characters (the
  reply says it was cut, and how long it was);
- each distinct (cut) text is rendered once, on a work pool thread, and kept
  (`MAX_CACHED_BYTES` of rendered HTML, least recently used first out);
- a `runs` request waits at most `WAIT_SECONDS` in all for renders it started;
  a description not rendered by then is served as escaped plain text, and the
  rendered HTML on a later poll.

So a `runs` call never does Markdown work on a description it has seen before, and
its wait for new ones is bounded, whatever the logdir holds.
"""

import html
import threading
import time
from concurrent import futures
from typing import Dict, Iterable, Tuple

from tensorboard import plugin_util
from tensorboard.util import tb_logging

from tb_lstm_states import cache
from tb_lstm_states.storage import format

logger = tb_logging.get_logger()

WAIT_SECONDS = 0.25
MAX_CACHED_BYTES = 16 << 20


def cut(description: str) -> Tuple[str, bool]:
    """`(text, was_cut)`: the description's first `MAX_DESCRIPTION_CHARS` characters."""
    if not isinstance(description, str):
        return "", False
    if len(description) <= format.MAX_DESCRIPTION_CHARS:
        return description, False
    return description[: format.MAX_DESCRIPTION_CHARS], True


def plain_html(text: str) -> str:
    """Safe HTML showing `text` as it is (while its Markdown is being rendered)."""
    return "<p>%s</p>" % html.escape(text).replace("\n", "<br>") if text else ""


def render(text: str) -> str:
    """Markdown to safe HTML; plain text if the renderer fails on this text."""
    try:
        return plugin_util.markdown_to_safe_html(text)
    except Exception as e:  # pylint: disable=broad-except
        # A renderer bug on crafted text must not take `runs` down: show it as text.
        logger.warning(
            "lstm_states: a description could not be rendered (%s: %s); shown as plain text",
            type(e).__name__,
            str(e)[:200],
        )
        return plain_html(text)


class Descriptions:
    """Rendered descriptions by content, rendered on `pool` (a `work.WorkPool`)."""

    def __init__(self, pool):
        self._pool = pool
        self._rendered = cache.ByteBoundedCache(MAX_CACHED_BYTES)
        self._lock = threading.Lock()

    def html(self, texts: Iterable[str], wait: float = WAIT_SECONDS) -> Dict[str, str]:
        """Safe HTML for each (already cut) text: rendered Markdown when ready (waiting
        at most `wait` seconds in all), else escaped plain text."""
        result: Dict[str, str] = {}
        pending: Dict[str, futures.Future] = {}
        for text in set(texts):
            if not text:
                result[text] = ""
                continue
            rendered = self._rendered.get(text)
            if rendered is not None:
                result[text] = rendered
            else:
                pending[text] = self._pool.submit(("description", text), self._job(text))
        deadline = time.monotonic() + wait
        for text, future in pending.items():
            try:
                result[text] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except (futures.TimeoutError, futures.CancelledError):
                result[text] = plain_html(text)
        return result

    def _job(self, text):
        def job():
            rendered = self._rendered.get(text)
            if rendered is None:
                rendered = render(text)
                self._rendered.put(text, rendered, size=2 * len(text) + len(rendered) + 64)
            return rendered

        return job
