"""The errors of reading records from a logdir.

Every check of what a logdir holds (`format.parse_index`, `jsonsafe.parse_json`,
the checked reads of `ranged.py`, version 1 records in `legacy.py`) raises a
`FormatError`; readers turn it into a skipped record or a 404.
"""


class FormatError(ValueError):
    """An index or array file is malformed, torn, fails a checksum, or is too new."""


class NewerVersionError(FormatError):
    """A record was written by a newer version of this package: upgrade to read it."""
