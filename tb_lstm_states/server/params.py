"""Query parameters and JSON replies of the routes.

Parameters are parsed strictly: a missing, repeated or malformed one answers 400
with a plain-text message naming it. JSON numbers that are undefined or not finite
are `null`.
"""

import json
import math
import re

import numpy as np
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util

_INTEGER = re.compile(r"-?[0-9]{1,19}")
_INT64_MAX = (1 << 63) - 1


def context(request):
    return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)


def json_float(value):
    value = float(value)
    return value if math.isfinite(value) else None


def floats(array, significant=None):
    """A nested list of an array's values, None where not finite.

    Args:
      array: an array of numbers.
      significant: if given, round to this many significant digits.
    """
    array = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(array)
    if significant is not None:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            magnitude = np.floor(np.log10(np.abs(np.where(finite & (array != 0), array, 1.0))))
            scale = 10.0 ** (significant - 1 - magnitude)
            array = np.where(finite, np.round(array * scale) / scale, array)
    if finite.all():
        return array.tolist()
    values = array.astype(object)
    values[~finite] = None
    return values.tolist()


def rounded_relative(values):
    """Values rounded to 1e-3 of the largest magnitude's power of ten, as a list.

    Finer than any canvas draws, and short numbers make a shorter reply, quicker to
    encode as JSON (figures: benchmarks/serve.py).
    """
    largest = float(np.abs(values).max()) if len(values) else 0.0
    decimals = 3 - math.floor(math.log10(largest)) if largest > 0 else 0
    return np.round(values, max(decimals, 0)).tolist()


def encode(value):
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")


def json_reply(request, value):
    return json_bytes_reply(request, encode(value))


def json_bytes_reply(request, body):
    return http_util.Respond(request, body, "application/json")


class Args:
    """Strict query-parameter parsing: every problem is a 400 naming the parameter."""

    def __init__(self, request):
        self._args = request.args

    def _single(self, name, required):
        values = self._args.getlist(name)
        if len(values) > 1:
            raise errors.InvalidArgumentError(
                "parameter %r is given %d times; give it once" % (name, len(values))
            )
        if not values:
            if required:
                raise errors.InvalidArgumentError("missing parameter %r" % (name,))
            return None
        return values[0]

    def string(self, name):
        return self._single(name, True)

    def optional_string(self, name):
        return self._single(name, False)

    def integer(self, name, *, minimum=-_INT64_MAX - 1, required=True):
        value = self._single(name, required)
        if value is None:
            return None
        return _parse_integer(name, value, minimum)

    def integer_list(self, name, *, minimum=-_INT64_MAX - 1, required=True):
        value = self._single(name, required)
        if value is None:
            return None
        items = value.split(",")
        if len(items) > 100_000:
            raise errors.InvalidArgumentError(
                "parameter %r lists more than 100000 values" % (name,)
            )
        return [_parse_integer(name, item, minimum) for item in items]

    def choice(self, name, choices, *, default=None):
        value = self._single(name, default is None)
        if value is None:
            return default
        if value not in choices:
            raise errors.InvalidArgumentError(
                "parameter %r must be one of %s, got %r" % (name, ", ".join(choices), value[:100])
            )
        return value

    def positive_float(self, name, *, default):
        value = self._single(name, False)
        if value is None:
            return default
        try:
            number = float(value) if len(value) <= 64 else float("nan")
        except ValueError:
            number = float("nan")
        if not (math.isfinite(number) and number > 0):
            raise errors.InvalidArgumentError(
                "parameter %r must be a positive finite number, got %r" % (name, value[:100])
            )
        return number


def _parse_integer(name, value, minimum):
    if not _INTEGER.fullmatch(value) or not (-_INT64_MAX - 1 <= int(value) <= _INT64_MAX):
        raise errors.InvalidArgumentError(
            "parameter %r must be an integer, got %r" % (name, value[:100])
        )
    number = int(value)
    if number < minimum:
        raise errors.InvalidArgumentError(
            "parameter %r must be at least %d, got %d" % (name, minimum, number)
        )
    return number
