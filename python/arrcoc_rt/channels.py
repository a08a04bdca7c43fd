"""The 40 texture channels as an IntEnum, generated from the C++ enum's names (one source)."""

from __future__ import annotations

import enum
import operator

from . import _native

Channel = enum.IntEnum(
    "Channel", [(_native.channel_name(i).upper(), i) for i in range(_native.NUM_CHANNELS)], module=__name__
)
Channel.__doc__ = ("Texture channels (see docs/CHANNELS.md). Channel.LUMINANCE == 3, Channel.SEMANTIC_0 .. "
                   "SEMANTIC_15 == 17..32, Channel.RELEVANCE == 39.")


def channel_index(channel) -> int:
    """Index of a channel given as a Channel, an int 0..39 or a name ('luminance', 'SALIENCY')."""
    if isinstance(channel, str):
        try:
            return int(Channel[channel.upper()])
        except KeyError:
            raise ValueError(f"channel: unknown name {channel!r}; expected one of "
                             f"{', '.join(c.name.lower() for c in Channel)}") from None
    if isinstance(channel, bool):
        raise TypeError("channel: expected a Channel, an int or a name; got bool")
    try:
        c = operator.index(channel)
    except TypeError:
        raise TypeError(f"channel: expected a Channel, an int or a name; got {type(channel).__name__}") from None
    if not 0 <= c < _native.NUM_CHANNELS:
        raise ValueError(f"channel: index {c} is out of range; expected 0..{_native.NUM_CHANNELS - 1}")
    return c


def base_level(channel) -> int:
    """Finest mip level at which a channel is stored."""
    return _native.channel_base_level(channel_index(channel))
