"""`never_500`: whatever a logdir holds or a request asks, a route answers 400 or 404
naming the problem, never 500."""

import functools

from tensorboard import errors
from tensorboard.util import tb_logging

from tb_lstm_states.server import records

logger = tb_logging.get_logger()


def never_500(handler):
    """Answers 404 for an error raised by a logdir's content that no narrower check
    caught: whatever a logdir holds, a route never answers 500. Any other error (a
    bug) is logged with its traceback and answered 404 too, naming it."""

    @functools.wraps(handler)
    def wrapper(self, request):
        try:
            return handler(self, request)
        except errors.PublicError:
            raise
        except records.LOGDIR_ERRORS as e:
            logger.warning(
                "lstm_states: %s answered 404: %s: %s",
                request.path,
                type(e).__name__,
                records.message(e),
            )
            raise errors.NotFoundError(
                "lstm_states cannot serve this from the logdir: %s" % records.message(e)
            ) from e
        except Exception as e:  # pylint: disable=broad-except
            logger.error("lstm_states: %s failed", request.path, exc_info=True)
            raise errors.NotFoundError(
                "lstm_states could not serve this (%s: %s); the "
                "TensorBoard log has the details" % (type(e).__name__, records.message(e))
            ) from e

    return wrapper
