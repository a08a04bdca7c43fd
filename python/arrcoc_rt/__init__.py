"""arrcoc_rt: decides, frame by frame, where a frozen vision-language model should look.

Per frame: a 40-channel texture array with mipmaps, a cluster-first cascade, three scores, a
balanced allocation of a fixed token budget and the glimpses of the chosen tokens (CPU and CUDA).

    >>> import numpy as np, arrcoc_rt
    >>> builder = arrcoc_rt.TextureBuilder(640, 480)          # device="auto", dtype="float16"
    >>> tex = builder.build(np.zeros((480, 640, 3), np.uint8))
    >>> tex.channel(arrcoc_rt.Channel.LUMINANCE).shape
    (480, 640)
"""

from . import cuda, reference
from .cascade import CascadeResult, ClusterCascade
from ._native import version as _version
from .channels import Channel, base_level, channel_index
from .runtime import cuda_available, cuda_built, devices, info
from .frames import PIXEL_FORMATS
from .pipeline import FrameResult, Pipeline
from .query import Query
from .sources import SourceError, SourceGap, open
from .stream import Stream
from .stream_group import StreamGroup
from .weights import default_weights, load_weights, save_weights
from .texture import Texture, TextureBuilder, to_host
from .visualize import overlay

__version__ = _version()

__all__ = [
    "CascadeResult",
    "Channel",
    "ClusterCascade",
    "FrameResult",
    "PIXEL_FORMATS",
    "Pipeline",
    "Query",
    "SourceError",
    "Stream",
    "StreamGroup",
    "Texture",
    "TextureBuilder",
    "base_level",
    "channel_index",
    "cmake_prefix_path",
    "cuda",
    "cuda_available",
    "cuda_built",
    "default_weights",
    "devices",
    "info",
    "load_weights",
    "overlay",
    "reference",
    "save_weights",
    "to_host",
]


def cmake_prefix_path() -> str:
    """Folder to put on CMAKE_PREFIX_PATH so a C++ project can `find_package(arrcoc)` the
    library that ships inside this package."""
    import os

    return os.path.dirname(os.path.abspath(__file__))
