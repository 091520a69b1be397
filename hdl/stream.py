"""The 64-bit beat stream that carries frames between the MAC and the pipeline.

A frame is a run of beats from one with ``first`` set to one with ``last``
set. Frame byte ``8 * n + k`` travels in beat ``n``, lane ``k`` (bits
``8k+7 .. 8k`` of ``data``), so the byte offsets of PROTOCOLS.md map to
beats and lanes by division by 8.
"""

from amaranth.hdl import Cat
from amaranth.lib import data, stream

__all__ = ["BEAT_BYTES", "Beat", "rx_stream", "lane", "big_endian"]

#: Bytes per beat of the datapath.
BEAT_BYTES = 8


class Beat(data.Struct):
    """One beat of a frame.

    Interface attributes
    --------------------
    data : 64 bits
        Frame bytes, byte 0 of the beat in bits 7..0.
    keep : 8 bits
        Byte enables. From the MAC they are contiguous from lane 0 and only the
        last beat may be partial; inside the pipeline they mark which lanes
        belong to the current layer's payload (a contiguous run of lanes,
        possibly empty).
    first : 1 bit
        First beat of a frame.
    last : 1 bit
        Last beat of a frame.
    err : 1 bit
        On the last beat: the frame is bad (from the MAC: FCS or PHY error;
        inside the pipeline: any problem found at the end of the frame).
    """

    data: 8 * BEAT_BYTES
    keep: BEAT_BYTES
    first: 1
    last: 1
    err: 1


def rx_stream(layout=Beat):
    """The signature of a receive-side stream of `layout` (beats by default).

    Receive streams have no backpressure (``always_ready``): the MAC never
    waits, and every stage keeps up with line rate or drops whole frames.
    """
    return stream.Signature(layout, always_ready=True)


def lane(value, index):
    """Byte ``index`` of a beat's ``data``."""
    return value[8 * index:8 * index + 8]


def big_endian(*octets):
    """The unsigned value of ``octets`` read in network order (first is most significant)."""
    return Cat(*reversed(octets))
