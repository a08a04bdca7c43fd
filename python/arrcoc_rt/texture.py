"""Stage 1 from Python: TextureBuilder (created once for a maximum size) and Texture views."""

from __future__ import annotations

import operator
import weakref

import numpy as np

from . import _native
from .channels import Channel, base_level, channel_index
from .runtime import resolve_device
from .frames import DEVICE_CUDA, FrameSpec, device_stream_handle, frame_spec, stream_handle

NUM_LEVELS = _native.NUM_LEVELS
PLANES = ("all", "pipeline")  # TextureBuilder(planes=...): which level-0 planes are written
MAX_DIMENSION = 16384


def _positive_int(value, name: str, hi: int = MAX_DIMENSION) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an int; got bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int; got {type(value).__name__}") from None
    if not 1 <= v <= hi:
        raise ValueError(f"{name}: {v} is out of range; expected 1..{hi}")
    return v


def _fixation(fixation) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in fixation)
    except (TypeError, ValueError):
        raise TypeError(f"fixation: expected a pair (x, y) of floats in [0, 1]; got {fixation!r}") from None
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):  # also rejects NaN
        raise ValueError(f"fixation: ({x}, {y}) must lie in [0, 1] x [0, 1] (fractions of width and height)")
    return x, y


def to_host(array) -> np.ndarray:
    """A texture array from either backend as a NumPy array: CPU views pass through (zero-copy),
    CUDA arrays are copied to the host after the build has finished (torch tensors too, from any
    device)."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "detach"):  # torch (return_tensors='pt'), on the CPU or a GPU
        return array.detach().cpu().numpy()
    return array.numpy()


class Texture:
    """One built texture array: 40 channels x 5 mip levels (see docs/CHANNELS.md).

    Arrays returned here are zero-copy views of the builder's memory (NumPy on the CPU; objects
    with ``__dlpack__`` on CUDA, for torch.from_dlpack / cupy.from_dlpack). They are overwritten
    by the builder's next ``build()``: copy what you keep. Using a Texture after that raises.
    """

    def __init__(self, builder: "TextureBuilder", info: dict, generation: int):
        self._builder = builder
        self._info = info
        self._generation = generation
        self.width: int = info["width"]
        self.height: int = info["height"]
        self.motion_valid: bool = info["motion_valid"]
        self.frame_index: int = info["frame_index"] - 1  # 0 for the builder's first frame, as FrameResult
        self._level0_kept: int = info["level0_kept"]

    @property
    def device(self) -> str:
        return self._builder.device

    @property
    def dtype(self) -> str:
        return self._builder.dtype

    @property
    def level_sizes(self) -> list[tuple[int, int]]:
        """(width, height) of levels 0..4."""
        return [(w, h) for (w, h, _, _) in self._info["levels"]]

    def _check_fresh(self) -> None:
        if self._builder._native is None:
            raise RuntimeError(f"this Texture's {self._builder._owner} was closed (its memory is freed); copy the arrays "
                               "you need before close()")
        if self._generation != self._builder._generation:
            raise RuntimeError("this Texture was overwritten by a later build(); copy the arrays you need, and "
                               "call FrameResult.gather_features or a VLM adapter's prepare(), before the "
                               "pipeline processes the next frame")

    def _level_index(self, level) -> int:
        try:
            k = operator.index(level)
        except TypeError:
            raise TypeError(f"level: expected an int 0..{NUM_LEVELS - 1}; got {type(level).__name__}") from None
        if not 0 <= k < NUM_LEVELS:
            raise ValueError(f"level: {k} is out of range; expected 0..{NUM_LEVELS - 1}")
        return k

    @staticmethod
    def channels_at(level: int) -> list[Channel]:
        """Channels stored at ``level``, in the order of the planes of ``level(level)``."""
        return [Channel(c) for c in range(_native.NUM_CHANNELS) if _native.channel_base_level(c) <= level]

    def has_plane(self, channel, level: int = 0) -> bool:
        """Whether ``channel`` at ``level`` holds this frame's values: stored there (its base level
        <= ``level``) and, at level 0, written (see TextureBuilder's ``planes``)."""
        c = channel_index(channel)
        k = self._level_index(level)
        return base_level(c) <= k and (k > 0 or bool(self._level0_kept >> c & 1))

    def _check_whole_level(self, k: int) -> None:
        """level(k) and to_numpy(k) hand out every plane of level k: all of them must be written."""
        if any(not self.has_plane(c, k) for c in self.channels_at(k)):
            raise self._not_kept(f"level {k} as a whole")

    def _not_kept(self, what: str) -> ValueError:
        kept = ", ".join(Channel(c).name.lower() for c in self.channels_at(0) if self._level0_kept >> c & 1)
        return ValueError(f"{what} is not written in this texture: its builder keeps at level 0 only {kept} "
                          "(planes='pipeline', a Pipeline's default; channel() reads those); ask for level >= 1, "
                          "or create it with planes='all' (Pipeline(..., texture_planes='all'))")

    def level(self, level: int):
        """All planes stored at ``level`` as one [planes, height, width] array (zero-copy);
        ``Texture.channels_at(level)`` names the planes."""
        self._check_fresh()
        k = self._level_index(level)
        self._check_whole_level(k)
        w, h, offset, planes = self._info["levels"][k]
        return self._read_only(self._builder._native.view(self._info["data"], offset, [planes, h, w]))

    def channel(self, channel, level: int = 0):
        """Plane of one channel (Channel, index or name) at ``level``: [height, width], zero-copy."""
        self._check_fresh()
        c = channel_index(channel)
        k = self._level_index(level)
        b = base_level(c)
        if k < b:
            raise ValueError(f"channel {Channel(c).name.lower()} is stored from level {b} on (it is defined on a "
                             f"coarser grid); ask for level >= {b}, or upsample with "
                             "arrcoc_rt.reference.upsample_to_level")
        if not self.has_plane(c, k):
            raise self._not_kept(f"channel {Channel(c).name.lower()} at level 0")
        w, h, offset, _ = self._info["levels"][k]
        plane = _native.plane_index(c, k)
        return self._read_only(self._builder._native.view(self._info["data"], offset + plane * w * h, [h, w]))

    @staticmethod
    def _read_only(a):
        if isinstance(a, np.ndarray):  # views of the builder's memory: writing would corrupt it
            a.flags.writeable = False
        return a

    def to_numpy(self, level: int = 0) -> dict:
        """{Channel: float32 NumPy copy} of every channel stored at ``level`` (host copies; CPU only)."""
        if self.device != "cpu":
            raise ValueError("to_numpy: the texture is in CUDA memory; use channel()/level() with "
                             "torch.from_dlpack or cupy.from_dlpack")
        self._check_whole_level(self._level_index(level))
        return {c: np.asarray(self.channel(c, level), dtype=np.float32) for c in self.channels_at(level)}

    def __repr__(self) -> str:
        return (f"Texture({self.width}x{self.height}, dtype={self.dtype}, device={self.device}, "
                f"frame_index={self.frame_index}, motion_valid={self.motion_valid})")


def release_after_work(wait, keepalive: list) -> None:
    """A finalizer's body: the producers' memory in ``keepalive`` is let go only after ``wait()``
    (the device work that reads it), so a caching allocator cannot hand it out under a kernel."""
    if keepalive:
        try:
            wait()
        except Exception:  # noqa: BLE001 - a finalizer must not raise (interpreter shutdown, a lost device)
            pass
        keepalive.clear()


class TextureBuilder:
    """Builds the 40-channel texture array with mipmaps, frame after frame.

    Created once with the largest frame size it will see (all memory is allocated here, nothing
    per frame); ``build()`` accepts any frame up to that size. It keeps the previous frame's
    luminance for the motion channels; ``reset()`` forgets it (e.g. at a scene cut).

    Args:
        width, height: maximum frame size, 1..16384.
        device: 'auto' (CUDA if built and a GPU is usable, else CPU), 'cpu', 'cuda' or 'cuda:N'.
        dtype: storage type of the texture, 'float16' (default) or 'float32'.
        fixation: eccentricity centre (x, y) in fractions of width and height.
        num_threads: CPU worker threads, 0 = all cores.
        planes: 'all' (default) writes every channel at every level; 'pipeline' writes at level 0
            only what a Pipeline's later stages read (red, green, blue, motion): the other level-0
            planes are computed into per-thread rows for their mips and never stored (the CPU saves
            their stores). Everything stored is identical under both.
    """

    def __init__(self, width: int, height: int, *, device: str = "auto", dtype: str = "float16",
                 fixation=(0.5, 0.5), num_threads: int = 0, planes: str = "all"):
        self.max_width = _positive_int(width, "width")
        self.max_height = _positive_int(height, "height")
        if dtype not in ("float16", "float32"):
            raise ValueError(f"dtype: {dtype!r} is not supported; expected 'float16' or 'float32'")
        if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or not 0 <= num_threads <= 1024:
            raise ValueError(f"num_threads: expected an int 0..1024 (0 = all cores); got {num_threads!r}")
        if planes not in PLANES:
            raise ValueError(f"planes: {planes!r} is not supported; expected one of {', '.join(map(repr, PLANES))}")
        fx, fy = _fixation(fixation)
        self.device, self.cuda_device = resolve_device(device)
        self.dtype = dtype
        self.planes = planes
        self._native = _native.TextureBuilder(self.max_width, self.max_height, dtype, self.device,
                                              self.cuda_device, int(num_threads), fx, fy, planes)
        self._generation = 0
        self._inflight = []  # device frames whose kernels may still be queued
        # Dropped with this object while the native builder (kept by Texture views) may still have
        # kernels queued that read those frames: they are waited for first.
        self._finalizer = weakref.finalize(self, release_after_work, self._native.synchronize, self._inflight)
        self._owner = "TextureBuilder"  # what the user created, for messages (a Pipeline sets its name)

    def close(self) -> None:
        """Frees this builder's memory now (host and device), after its queued work: its Textures are
        refused from then on, and so is build(). A context manager closes it too."""
        if self._native is None:
            return
        self._native.synchronize()
        self._finalizer()  # (holds the native builder until it has run)
        self._native = None

    def _open(self):
        """The native builder; ValueError once closed."""
        if self._native is None:
            raise ValueError(f"this {self._owner} is closed; create a new one")
        return self._native

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check_frame(self, frame, *, pixel_format: str | None = None, layout: str | None = None,
                    stream=None) -> tuple:
        """The checks of ``build`` without building: ValueError/TypeError for a frame that ``build``
        would refuse (e.g. before frames of several streams go through, so none moves on alone).
        Returns the frame's (width, height)."""
        self._open()
        spec = self._checked_spec(frame, pixel_format, layout, stream, stream_handle(stream))
        return spec.width, spec.height

    def _checked_spec(self, frame, pixel_format, layout, stream, handle: int):
        if self.device == "cuda":
            device_stream_handle(stream, self.cuda_device, self._owner)
        # A FrameSpec is a frame already read here (StreamGroup checks every stream's frame first
        # and hands build the result): reading it again would call a DLPack producer's __dlpack__
        # twice, and a capsule can be consumed only once.
        if isinstance(frame, FrameSpec) and (pixel_format is not None or layout is not None):
            raise ValueError("frame: already read (a FrameSpec); pixel_format and layout apply when it is read")
        spec = frame if isinstance(frame, FrameSpec) else frame_spec(frame, pixel_format, "frame", handle, layout)
        if spec.width > self.max_width or spec.height > self.max_height:
            raise ValueError(self._too_large(spec.width, spec.height))
        if spec.device == DEVICE_CUDA and self.device != "cuda":
            raise ValueError("frame: it is in CUDA memory but this builder runs on the CPU; create the builder "
                             "with device='cuda' (or copy the frame to the host)")
        if spec.device == DEVICE_CUDA and spec.device_id != self.cuda_device:
            raise ValueError(f"frame: it is on cuda:{spec.device_id} but this builder runs on cuda:{self.cuda_device}; "
                             f"move the frame (e.g. tensor.to('cuda:{self.cuda_device}')) or create the builder on "
                             f"device='cuda:{spec.device_id}'")
        return spec

    def build(self, frame, *, pixel_format: str | None = None, layout: str | None = None, stream=None) -> Texture:
        """Texture of ``frame``: a NumPy array (H x W gray, H x W x 3 RGB, H x W x 4 RGBA, uint8), a
        torch/CuPy tensor (DLPack or CUDA array interface, zero-copy), or a tuple of planes for
        ``pixel_format='nv12'`` / ``'yuv420p'``. ``pixel_format`` also selects 'bgr24' / 'bgra32'.
        A 3 x H x W array or tensor (torchcodec's and torchvision's layout) is planar RGB, read
        without a copy: ``layout='CHW'``, or taken from the shape when unambiguous.
        On CUDA the work is queued on ``stream`` (default: the legacy default stream)."""
        self._open()
        handle = stream_handle(stream)
        spec = self._checked_spec(frame, pixel_format, layout, stream, handle)
        if self._inflight and self._native.query():
            self._inflight.clear()  # the kernels that read those frames have finished
        info = self._native.build(spec.planes, spec.row_strides, spec.width, spec.height, spec.format_code,
                                  spec.device, spec.device_id, handle)
        if spec.device == DEVICE_CUDA:
            # The kernels read the producer's memory later: keep it (and its DLPack capsule) alive
            # until they have finished, or a caching allocator could hand it out meanwhile.
            self._inflight.append(spec.keepalive)
        self._generation += 1
        return Texture(self, info, self._generation)

    def _too_large(self, w: int, h: int) -> str:
        owner, mw, mh = self._owner, self.max_width, self.max_height
        hint = (f"; sizes are (width, height): did you mean {owner}({mh}, {mw})?" if w <= mh and h <= mw
                else f"; create a {owner}({max(w, mw)}, {max(h, mh)}) for frames this large")
        return f"frame: {w}x{h} (width x height) is larger than this {owner}'s maximum {mw}x{mh}" + hint

    def reset(self) -> None:
        """Forget the previous frame: the next texture has no motion (motion_valid False)."""
        self._open().reset()

    def set_fixation(self, x: float, y: float) -> None:
        """Move the eccentricity centre (fractions of width and height)."""
        fx, fy = _fixation((x, y))
        self._open().set_fixation(fx, fy)

    def synchronize(self) -> None:
        """Wait until the last build has finished (CUDA; no-op on the CPU, and once closed)."""
        if self._native is not None:
            self._native.synchronize()
        self._inflight.clear()

    def __repr__(self) -> str:
        return f"TextureBuilder({self.max_width}x{self.max_height}, device={self.device!r}, dtype={self.dtype!r})"
