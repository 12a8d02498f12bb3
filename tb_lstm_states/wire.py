"""The protobuf wire format, for messages assembled by hand around large arrays.

The writer builds an `Event` from serialized pieces (and memoryviews of the arrays)
rather than through protobuf, so a large record is never copied into a message.
"""


def key(field_number: int, wire_type: int) -> bytes:
    """The tag of a field: wire type 0 is a varint, 1 a fixed 64-bit, 2 length-delimited."""
    return varint(field_number << 3 | wire_type)


def varint(value: int) -> bytes:
    """`value` (non-negative, below 2**64) as a base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(field_number: int, length: int) -> bytes:
    """The tag and length that come before a length-delimited field of `length` bytes."""
    return key(field_number, 2) + varint(length)
