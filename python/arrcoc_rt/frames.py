"""Turning what users hand us (NumPy arrays, DLPack / CUDA-array-interface tensors from torch or
CuPy, planar YUV tuples) into plane pointers for the C++ core, zero-copy.

Every problem raises TypeError (wrong kind of object or dtype) or ValueError (wrong shape,
stride, size or format) naming the argument, what it was and what was expected. Nothing is
silently cast or copied.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _native

PIXEL_FORMATS = ("rgb24", "bgr24", "rgba32", "bgra32", "gray8", "nv12", "yuv420p", "rgbp")
LAYOUTS = ("HWC", "CHW")
_FORMAT_CODE = {name: i for i, name in enumerate(PIXEL_FORMATS)}
_CHANNELS = {"rgb24": 3, "bgr24": 3, "rgba32": 4, "bgra32": 4}

def parse_size(text, what: str = "size") -> tuple[int, int]:
    """'WIDTHxHEIGHT' (a command-line size) -> (width, height), both positive integers; ValueError
    naming ``what`` otherwise."""
    parts = str(text).strip().lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"{what} {text!r}: expected WIDTHxHEIGHT with positive integers, e.g. 640x480")
    return int(parts[0]), int(parts[1])


DEVICE_CPU, DEVICE_CUDA = 0, 1
_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13


@dataclass
class ArrayDesc:
    """A strided uint8 array anywhere: pointer, shape, byte strides, device."""

    ptr: int
    shape: tuple
    strides: tuple  # bytes
    device: int  # DEVICE_CPU / DEVICE_CUDA
    device_id: int
    keepalive: Any = None
    read_only: bool = False  # the producer says it must not be written (CUDA array interface, DLPack 1.x)


@dataclass
class FrameSpec:
    """Plane pointers + geometry, ready for the C++ FrameView."""

    planes: list
    row_strides: list
    width: int
    height: int
    pixel_format: str
    device: int
    device_id: int
    keepalive: list = field(default_factory=list)

    @property
    def format_code(self) -> int:
        return _FORMAT_CODE[self.pixel_format]


def stream_device(stream) -> int | None:
    """The CUDA device a stream object says it is on (arrcoc_rt.cuda.Stream, torch.cuda.Stream,
    CuPy's Stream); None for an int handle or an object that does not say."""
    if stream is None or isinstance(stream, (int, np.integer)):
        return None
    dev = getattr(stream, "device", None)
    if isinstance(dev, (int, np.integer)) and not isinstance(dev, bool):
        return int(dev) if dev >= 0 else None
    if getattr(dev, "type", None) == "cuda" and isinstance(getattr(dev, "index", None), int):  # torch.device
        return dev.index
    dev_id = getattr(stream, "device_id", None)  # CuPy (-1: its null, per-thread and external streams say no device)
    return dev_id if isinstance(dev_id, int) and not isinstance(dev_id, bool) and dev_id >= 0 else None


def stream_handle(stream) -> int:
    """CUDA stream handle as an int: None -> 0 (legacy default), an int, or an object with
    ``cuda_stream`` (torch) or ``ptr`` (CuPy)."""
    if stream is None:
        return 0
    if isinstance(stream, (int, np.integer)) and not isinstance(stream, bool):  # a bool falls to the TypeError
        return _checked_handle(int(stream), "stream")
    for attr in ("cuda_stream", "ptr"):
        if hasattr(stream, attr):
            return _checked_handle(int(getattr(stream, attr)), f"stream.{attr}")
    raise TypeError(f"stream: expected None, an int handle, a torch.cuda.Stream or a cupy Stream; got {type(stream).__name__}")


def device_stream_handle(stream, ordinal: int, owner: str) -> int:
    """``stream_handle`` of a stream for work on cuda:``ordinal``: a stream object that says it is on
    another device is a ValueError naming both (CUDA itself answers with a bare invalid-value or
    invalid-handle error, or worse)."""
    on = stream_device(stream)
    if on is not None and on != ordinal:
        raise ValueError(f"stream: it is a stream of cuda:{on} but this {owner} runs on cuda:{ordinal}; "
                         f"pass a stream of cuda:{ordinal}")
    return stream_handle(stream)


def _checked_handle(handle: int, name: str) -> int:
    # A handle is a pointer: a negative or wider value cannot be one (pybind11 would refuse it
    # with a message that lists the binding's arguments instead of naming the stream).
    if not 0 <= handle < 1 << 64:
        raise ValueError(f"{name}: {handle} is not a CUDA stream handle; expected 0 <= handle < 2**64")
    return handle


def _dtype_name(code_bits_lanes) -> str:
    code, bits, lanes = code_bits_lanes
    kind = {0: "int", 1: "uint", 2: "float", 4: "bfloat", 6: "bool"}.get(code, f"code{code}")
    return f"{kind}{bits}" + (f"x{lanes}" if lanes != 1 else "")


_DTYPES = {"uint8": (np.uint8, ("|u1", "<u1", ">u1"), (1, 8, 1)), "float32": (np.float32, ("<f4",), (2, 32, 1))}


def describe_array(obj, name: str, stream: int = 0, dtype: str = "uint8") -> ArrayDesc:
    """ArrayDesc of a NumPy array or a DLPack / __cuda_array_interface__ producer of ``dtype``."""
    np_dtype, typestrs, dl_dtype = _DTYPES[dtype]
    if isinstance(obj, np.ndarray):
        if obj.dtype != np_dtype:
            hint = " pixels (convert explicitly, e.g. (x * 255).round().astype(np.uint8))" if dtype == "uint8" else ""
            raise TypeError(f"{name}: dtype {obj.dtype} is not supported; expected {dtype}{hint}")
        return ArrayDesc(obj.__array_interface__["data"][0], obj.shape, obj.strides, DEVICE_CPU, 0, obj)

    # DLPack first: the producer orders its work before ours on the stream we name, and the
    # capsule (kept with the frame) holds its memory. The CUDA array interface is the fallback.
    dl_dev = tuple(int(v) for v in obj.__dlpack_device__()) if hasattr(obj, "__dlpack_device__") else None
    if dl_dev is not None and hasattr(obj, "__dlpack__"):
        if len(dl_dev) != 2:
            raise ValueError(f"{name}: __dlpack_device__() returned {dl_dev}; expected (device_type, device_id)")
        if dl_dev[0] not in (_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED):
            raise ValueError(f"{name}: DLPack device type {dl_dev[0]} is not supported; expected CPU or CUDA memory")
        on_cuda = dl_dev[0] in (_DL_CUDA, _DL_CUDA_MANAGED)
        try:
            # CPU producers take stream=None; for CUDA, 1 means the legacy default stream. A 1.x
            # capsule says whether the memory is read-only; producers older than that refuse max_version.
            try:
                cap = obj.__dlpack__(stream=(stream or 1) if on_cuda else None, max_version=(1, 0))
            except TypeError:
                cap = obj.__dlpack__(stream=(stream or 1) if on_cuda else None)
        except (RuntimeError, BufferError) as e:
            raise TypeError(f"{name}: the tensor refused DLPack export ({e}); for a torch tensor that "
                            "requires grad, pass tensor.detach()") from e
        info = _native.dlpack_tensor_info(cap)
        if (int(info["device_type"]), int(info["device_id"])) != dl_dev[:2]:
            raise ValueError(f"{name}: the DLPack tensor is on device {(info['device_type'], info['device_id'])} but "
                             f"its __dlpack_device__() says {dl_dev}; a producer must agree with itself")
        if tuple(info["dtype"]) != dl_dtype:
            raise TypeError(f"{name}: dtype {_dtype_name(info['dtype'])} is not supported; expected {dtype}")
        itemsize = np.dtype(np_dtype).itemsize
        shape = tuple(int(s) for s in info["shape"])
        strides = list(info["strides"]) if info["strides"] is not None else _contiguous_strides(shape, 1)
        return ArrayDesc(int(info["data"]), shape, tuple(int(s) * itemsize for s in strides),
                         DEVICE_CUDA if on_cuda else DEVICE_CPU, int(info["device_id"]), (obj, cap),
                         bool(info["readonly"]))

    try:
        cai = getattr(obj, "__cuda_array_interface__", None)
    except (RuntimeError, BufferError, AttributeError) as e:  # torch: a tensor that requires grad
        raise TypeError(f"{name}: the tensor refused the CUDA array interface ({e}); for a torch tensor "
                        "that requires grad, pass tensor.detach()") from e
    if cai is not None:
        typestr, shape, strides, ptr, producer_stream, read_only = _cai_fields(cai, name)
        if typestr not in typestrs:
            raise TypeError(f"{name}: dtype {typestr!r} is not supported; expected {dtype} ({typestrs[0]!r})")
        itemsize = np.dtype(np_dtype).itemsize
        strides = strides or _contiguous_strides(shape, itemsize)
        # The device is the pointer's own (the interface does not say); unknowable without CUDA.
        can_ask = ptr and _native.built_with_cuda() and _native.cuda_device_count() > 0
        dev_id = _native.cuda_pointer_device(ptr) if can_ask else 0
        if dev_id < 0:
            raise ValueError(f"{name}: __cuda_array_interface__ points at host memory, not CUDA device memory")
        # Without a usable device there is nothing to wait for (the memory is refused below).
        if can_ask and producer_stream is not None and producer_stream != (stream or 1):
            # The producer's work on its stream (1, 2: that device's default streams) must be done
            # before ours reads the memory.
            try:
                _native.cuda_stream_synchronize(producer_stream, dev_id)
            except RuntimeError as e:  # a handle that is no stream of that device (the fuzzer's 3)
                if "InvalidResourceHandle" not in str(e):
                    raise
                raise ValueError(f"{name}: __cuda_array_interface__ stream {producer_stream} is not a stream of "
                                 f"cuda:{dev_id}, where its memory is; expected None, 1 (legacy default), "
                                 "2 (per-thread default) or a stream handle of that device") from None
        return ArrayDesc(ptr, shape, tuple(int(s) for s in strides), DEVICE_CUDA, dev_id, obj, read_only)

    if hasattr(obj, "__array_interface__"):
        return describe_array(np.asarray(obj), name, stream, dtype)
    raise TypeError(f"{name}: expected a NumPy array, a DLPack tensor (torch, CuPy, ...) or an object with "
                    f"__cuda_array_interface__; got {type(obj).__name__}")


def _int_tuple(value, what: str, name: str) -> tuple:
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name}: __cuda_array_interface__ {what} must be a tuple of ints; got {type(value).__name__}")
    try:
        return tuple(operator.index(v) for v in value)
    except TypeError:
        raise TypeError(f"{name}: __cuda_array_interface__ {what} must be a tuple of ints; got {value!r}") from None


def _cai_fields(cai, name: str):
    """(typestr, shape, strides or None, pointer, stream or None, read_only) of a __cuda_array_interface__
    dict (version 2 or 3), with TypeError/ValueError for anything malformed."""
    if not isinstance(cai, dict):
        raise TypeError(f"{name}: __cuda_array_interface__ must be a dict; got {type(cai).__name__}")
    missing = [k for k in ("shape", "typestr", "data") if k not in cai]
    if missing:
        raise ValueError(f"{name}: __cuda_array_interface__ lacks {', '.join(missing)}")
    shape = _int_tuple(cai["shape"], "shape", name)
    strides = cai.get("strides")
    if strides is not None:
        strides = _int_tuple(strides, "strides", name)
        if len(strides) != len(shape):
            raise ValueError(f"{name}: __cuda_array_interface__ strides {strides} do not match shape {shape}")
    data = cai["data"]
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name}: __cuda_array_interface__ data must be a pair (pointer, read_only); got {data!r}")
    try:
        ptr = operator.index(data[0])
    except TypeError:
        raise TypeError(f"{name}: __cuda_array_interface__ pointer must be an int; got {data[0]!r}") from None
    if not 0 <= ptr < 1 << 64:
        raise ValueError(f"{name}: __cuda_array_interface__ pointer {ptr} is not an address; expected 0 <= pointer "
                         "< 2**64")
    if cai.get("mask") is not None:  # masked elements would be read as data
        raise ValueError(f"{name}: __cuda_array_interface__ has a mask; masked arrays are not supported (fill "
                         "the masked elements and pass the plain array)")
    stream = cai.get("stream")
    if stream is not None:
        try:
            stream = operator.index(stream)
        except TypeError:
            raise TypeError(f"{name}: __cuda_array_interface__ stream must be None or an int; got {stream!r}") from None
        if stream <= 0:  # 0 is disallowed by the protocol (ambiguous)
            raise ValueError(f"{name}: __cuda_array_interface__ stream {stream} is not a stream; expected None, 1 "
                             "(legacy default), 2 (per-thread default) or a stream handle")
    return cai["typestr"], shape, strides, ptr, stream, bool(data[1])


def _plane(desc: ArrayDesc, name: str, row_bytes: int) -> int:
    """Checks that a (rows, cols[, k]) uint8 plane has packed pixels and a usable row stride;
    returns the row stride in bytes. Strides of size-1 dimensions do not matter."""
    shape, strides = desc.shape, desc.strides
    expected = [None] * len(shape)
    if len(shape) == 3:
        expected[2], expected[1] = 1, shape[2]
    else:
        expected[1] = 1
    for axis in range(len(shape)):
        if shape[axis] > 1 and strides[axis] < 0:
            raise ValueError(f"{name}: negative strides {strides} are not supported; "
                             "pass a positively strided array (e.g. np.ascontiguousarray(x))")
        if axis > 0 and shape[axis] > 1 and strides[axis] != expected[axis]:
            want = ", ".join(str(e) for e in expected[1:])
            raise ValueError(f"{name}: strides {strides} (bytes) do not describe packed pixels; expected "
                             f"(row_stride, {want}); pass np.ascontiguousarray(x) or a tensor made .contiguous()")
    if shape[0] == 1:
        return int(row_bytes)
    if strides[0] < row_bytes:
        raise ValueError(f"{name}: row stride {strides[0]} bytes is smaller than one row ({row_bytes} bytes); "
                         "rows must not overlap")
    return int(strides[0])


def frame_spec(frame, pixel_format: str | None = None, name: str = "frame", stream: int = 0,
               layout: str | None = None) -> FrameSpec:
    """Describe ``frame`` for the core. Packed frames: H x W (gray8), H x W x 3 (rgb24 / bgr24),
    H x W x 4 (rgba32 / bgra32). Planar RGB (rgbp): a 3 x H x W array or tensor (``layout='CHW'``, or
    taken from the shape when it is unambiguous: 3 first and not 3 or 4 last), as torchcodec and
    torchvision return, read without a copy; an H x W x 3 view whose channels are planes (a permuted
    CHW tensor) is read by its strides. Planar YUV 4:2:0: a tuple (Y, UV) for nv12 with UV of shape
    (ceil(H/2), ceil(W/2), 2) or (ceil(H/2), 2*ceil(W/2)), or (Y, U, V) for yuv420p."""
    if pixel_format is not None and pixel_format not in PIXEL_FORMATS:
        raise ValueError(f"pixel_format: {pixel_format!r} is not supported; expected one of {', '.join(PIXEL_FORMATS)}")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout: {layout!r} is not supported; expected 'HWC' (height, width, channels) or 'CHW'")

    if pixel_format in ("nv12", "yuv420p"):
        n = 2 if pixel_format == "nv12" else 3
        if not isinstance(frame, (tuple, list)) or len(frame) != n:
            planes = "(Y, UV)" if n == 2 else "(Y, U, V)"
            raise TypeError(f"{name}: pixel_format {pixel_format!r} takes a tuple of {n} planes {planes}; "
                            f"got {type(frame).__name__}")
        descs = [describe_array(p, f"{name}[{i}]", stream) for i, p in enumerate(frame)]
        y = descs[0]
        if len(y.shape) != 2:
            raise ValueError(f"{name}[0] (Y plane): expected 2 dimensions (H, W); got shape {y.shape}")
        h, w = y.shape
        _check_size(w, h, name)
        ch, cw = (h + 1) // 2, (w + 1) // 2
        rows, strides = [y], [_plane(y, f"{name}[0]", w)]
        for i, d in enumerate(descs[1:], start=1):
            if pixel_format == "nv12":
                ok = d.shape in ((ch, cw, 2), (ch, 2 * cw))
                expect = f"({ch}, {cw}, 2) or ({ch}, {2 * cw})"
                rb = 2 * cw
            else:
                ok = d.shape == (ch, cw)
                expect = f"({ch}, {cw})"
                rb = cw
            if not ok:
                raise ValueError(f"{name}[{i}] (chroma plane): shape {d.shape} does not fit a {w}x{h} "
                                 f"{pixel_format} frame; expected {expect}")
            if (d.device, d.device_id) != (y.device, y.device_id):  # a kernel would read another GPU's memory
                raise ValueError(f"{name}[{i}]: planes must all be on one device; plane 0 is on "
                                 f"{'cuda:%d' % y.device_id if y.device == DEVICE_CUDA else 'the host'}, this one on "
                                 f"{'cuda:%d' % d.device_id if d.device == DEVICE_CUDA else 'the host'}")
            rows.append(d)
            strides.append(_plane(d, f"{name}[{i}]", rb))
        return FrameSpec([d.ptr for d in rows], strides, w, h, pixel_format, y.device, y.device_id,
                         [d.keepalive for d in rows])

    d = describe_array(frame, name, stream)
    if len(d.shape) == 2:
        fmt = pixel_format or "gray8"
        if fmt != "gray8":
            raise ValueError(f"{name}: a 2-D array (H, W) is gray8; pixel_format {fmt!r} needs "
                             f"shape (H, W, {_CHANNELS.get(fmt, '?')})")
        h, w = d.shape
        _check_size(w, h, name)
        return FrameSpec([d.ptr], [_plane(d, name, w)], w, h, fmt, d.device, d.device_id, [d.keepalive])
    if len(d.shape) != 3:
        raise ValueError(f"{name}: expected shape (H, W), (H, W, 3) or (H, W, 4); got {len(d.shape)} "
                         f"dimensions {d.shape}")
    chw = layout == "CHW" or (layout is None and d.shape[0] == 3 and d.shape[2] not in (3, 4))
    if chw or pixel_format == "rgbp":
        if not chw:
            raise ValueError(f"{name}: pixel_format 'rgbp' is a 3 x H x W array (layout='CHW'); got shape {d.shape}")
        if d.shape[0] != 3:
            raise ValueError(f"{name}: layout 'CHW' needs 3 colour planes first (3, H, W); got shape {d.shape}")
        if pixel_format not in (None, "rgbp"):  # its planes are read as R, G, B: nothing else is honoured
            raise ValueError(f"{name}: a (3, H, W) frame is planar RGB (pixel_format 'rgbp'); pixel_format "
                             f"{pixel_format!r} is for (H, W, C) arrays: reorder the planes to R, G, B or "
                             f"pass the frame as (H, W, C); got shape {d.shape}")
        _, h, w = d.shape
        _check_size(w, h, name)
        plane = ArrayDesc(d.ptr, (h, w), d.strides[1:], d.device, d.device_id)
        return FrameSpec([d.ptr + k * d.strides[0] for k in range(3)], [_plane(plane, name, w)] * 3, w, h, "rgbp",
                         d.device, d.device_id, [d.keepalive])
    h, w, c = d.shape
    if (c == 3 and pixel_format in (None, "rgb24") and w > 1 and d.strides[1] == 1 and h * w > 1
            and abs(d.strides[2]) >= w):
        # an H x W x 3 view of planar memory (a permuted CHW tensor): its channels are planes
        plane = ArrayDesc(d.ptr, (h, w), d.strides[:2], d.device, d.device_id)
        if d.strides[2] < 0:
            raise ValueError(f"{name}: negative strides {d.strides} are not supported")
        return FrameSpec([d.ptr + k * d.strides[2] for k in range(3)], [_plane(plane, name, w)] * 3, w, h, "rgbp",
                         d.device, d.device_id, [d.keepalive])
    if c not in (3, 4):
        raise ValueError(f"{name}: {c} channels is not supported; expected 3 (rgb24/bgr24) or 4 (rgba32/bgra32) "
                         f"in shape (H, W, C); got {d.shape}")
    fmt = pixel_format or ("rgb24" if c == 3 else "rgba32")
    if fmt == "gray8":
        raise ValueError(f"{name}: pixel_format 'gray8' needs a 2-D array (H, W); got shape {d.shape}")
    if _CHANNELS.get(fmt) != c:
        raise ValueError(f"{name}: pixel_format {fmt!r} needs {_CHANNELS.get(fmt, 'planar')} channels; "
                         f"got shape {d.shape}")
    _check_size(w, h, name)
    return FrameSpec([d.ptr], [_plane(d, name, w * c)], w, h, fmt, d.device, d.device_id, [d.keepalive])


def _contiguous_strides(shape, itemsize: int) -> list:
    strides, acc = [], itemsize
    for n in reversed(shape):
        strides.insert(0, acc)
        acc *= n
    return strides


def _check_size(w: int, h: int, name: str) -> None:
    if w < 1 or h < 1:
        raise ValueError(f"{name}: size {w}x{h} is empty; expected at least 1x1 pixels")
