"""Small CUDA utilities that need neither torch nor CuPy: the current device, streams, device
arrays and page-locked host arrays on arrcoc_rt's CUDA devices.

    >>> s = arrcoc_rt.cuda.Stream(device=0)                       # a non-blocking stream
    >>> frame = arrcoc_rt.cuda.to_device(np_frame, device=0)      # DeviceArray (DLPack, CUDA array interface)
    >>> pipe.process(frame, stream=s); s.synchronize()
    >>> buf = arrcoc_rt.cuda.pinned_empty((720, 1280, 3))         # page-locked: faster, truly async uploads

In a test build (``ARRCOC_CUDA=EMULATE``) the devices are the CPU emulation: ``is_emulated()``;
``emulator_counters()`` / ``reset_emulator_counters()`` read and zero its allocation, synchronization
and memory counters (csrc/cuda_emu/include/cuda_emu_counters.h).
"""

from __future__ import annotations

import operator

import numpy as np

from . import _native
from .runtime import cuda_available, resolve_device

__all__ = ["Stream", "current_device", "emulator_counters", "graphs_enabled", "is_emulated", "pinned_empty",
           "reset_emulator_counters", "set_device", "set_graphs", "to_device"]


def is_emulated() -> bool:
    """True in a test build whose CUDA devices are the CPU emulation (never in a released wheel)."""
    return bool(_native.built_with_cuda() and _native.cuda_emulated())


def _emulator():
    """The emulator's exported C functions (ctypes), from the library the native module loaded."""
    global _EMU
    if not is_emulated():
        raise RuntimeError("emulator counters exist only in a test build (ARRCOC_CUDA=EMULATE)")
    if _EMU is None:
        import ctypes

        from . import _arrcoc

        lib = ctypes.CDLL(_arrcoc.__file__)  # dlsym searches its dependencies: libarrcoc_core
        lib.arrcoc_emu_read_counters.restype = ctypes.c_size_t
        lib.arrcoc_emu_read_counters.argtypes = [ctypes.POINTER(ctypes.c_char_p),
                                                 ctypes.POINTER(ctypes.c_ulonglong), ctypes.c_size_t]
        lib.arrcoc_emu_reset_counters.restype = None
        _EMU = lib
    return _EMU


_EMU = None


def emulator_counters() -> dict:
    """The emulated device's counters, per process over all devices since the last reset:
    ``malloc_calls``, ``free_calls``, ``malloc_host_calls``, ``free_host_calls``, ``host_syncs`` (every
    call that blocks the host on device work; by kind: ``device_syncs``, ``stream_syncs``,
    ``event_syncs``, ``blocking_copies``, ``blocking_memsets``, ``implicit_syncs``), ``queries``,
    ``launches``, ``async_copies``, ``captures`` and ``graph_launches`` (CUDA graphs), ``device_bytes`` and
    ``peak_device_bytes``. Test builds only."""
    import ctypes

    lib = _emulator()
    n = int(lib.arrcoc_emu_read_counters(None, None, 0))
    names, values = (ctypes.c_char_p * n)(), (ctypes.c_ulonglong * n)()
    lib.arrcoc_emu_read_counters(names, values, n)
    return {names[i].decode(): int(values[i]) for i in range(n)}


def reset_emulator_counters() -> None:
    """Zero the emulated device's call counters; ``peak_device_bytes`` restarts from the bytes live now."""
    _emulator().arrcoc_emu_reset_counters()


def set_graphs(enabled: bool) -> None:
    """Replay each stage's per-frame kernels as a CUDA graph (the default; the environment variable
    ``ARRCOC_CUDA_GRAPHS=0`` starts with them off) or launch every kernel on its own. Per process;
    results are the same either way (docs/ARCHITECTURE.md, "CUDA graphs")."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled: expected a bool; got {type(enabled).__name__}")
    _native.cuda_set_graphs(enabled)


def graphs_enabled() -> bool:
    """Whether stages run as replayed CUDA graphs (always False without the CUDA backend)."""
    return bool(_native.cuda_graphs())


def _ordinal(device) -> int:
    if device is None:  # the calling thread's current device
        return resolve_device("cuda")[1]
    if isinstance(device, str):
        kind, ordinal = resolve_device(device)
        if kind != "cuda":
            raise ValueError(f"device: {device!r} is not a CUDA device; expected 'cuda', 'cuda:N' or an int")
        return ordinal
    if isinstance(device, bool):
        raise TypeError("device: expected an int ordinal or 'cuda:N'; got bool")
    try:
        ordinal = operator.index(device)
    except TypeError:
        raise TypeError(f"device: expected an int ordinal or 'cuda:N'; got {type(device).__name__}") from None
    if ordinal < 0:
        raise ValueError(f"device: {ordinal} is not a device ordinal; expected 0..N-1")
    return resolve_device(f"cuda:{ordinal}")[1]


def current_device() -> int:
    """The calling thread's current CUDA device (arrcoc_rt never changes it)."""
    if not cuda_available():
        raise ValueError("no CUDA device is usable here (built without CUDA, or no GPU)")
    return int(_native.cuda_current_device())


def set_device(device) -> None:
    """Make ``device`` the calling thread's current CUDA device (as torch.cuda.set_device)."""
    _native.cuda_set_device(_ordinal(device))


class Stream:
    """A CUDA stream on ``device`` (default: the calling thread's current device; non-blocking by
    default: not ordered with the legacy default stream). Pass it as ``stream=`` to ``process``/``build``; ``synchronize()`` waits for it."""

    def __init__(self, device=None, *, non_blocking: bool = True):
        self._handle = None
        self.device = _ordinal(device)
        self._handle = int(_native.cuda_stream_create(self.device, bool(non_blocking)))

    @property
    def cuda_stream(self) -> int:
        """The handle; a ValueError once closed (0 would silently mean the legacy default stream)."""
        if self._handle is None:
            raise ValueError(f"stream: this cuda.Stream (cuda:{self.device}) is closed")
        return self._handle

    @property
    def closed(self) -> bool:
        return self._handle is None

    def synchronize(self) -> None:
        _native.cuda_stream_synchronize(self.cuda_stream)

    def close(self) -> None:
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            _native.cuda_stream_destroy(handle)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else f"handle={self._handle:#x}"
        return f"Stream(device=cuda:{self.device}, {state})"


def to_device(array, device=None, *, stream=None):
    """A copy of a NumPy array (uint8, float16, float32 or int32) in device memory (``device``:
    default the calling thread's current device), as a DeviceArray (``__dlpack__``, ``__cuda_array_interface__``, ``.numpy()``). Complete on return."""
    from .frames import device_stream_handle

    if not isinstance(array, np.ndarray):
        raise TypeError(f"to_device: expected a NumPy array; got {type(array).__name__}")
    ordinal = _ordinal(device)
    handle = device_stream_handle(stream, ordinal, "copy")
    # (np.ascontiguousarray would make a 0-d array 1-d)
    return _native.cuda_to_device(np.require(array, requirements="C"), ordinal, handle)


def pinned_empty(shape, dtype=np.uint8) -> np.ndarray:
    """An uninitialized NumPy array in page-locked host memory: its uploads are truly asynchronous
    (arrcoc_rt waits for them before ``build()`` returns, so it may be reused at once)."""
    dtype = np.dtype(dtype)
    try:  # integers only: int() would truncate a 2.7 to 2
        shape = (operator.index(shape),) if np.isscalar(shape) else tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"pinned_empty: shape {shape!r} is not a tuple of ints") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"pinned_empty: shape {shape} has a negative size")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return _native.cuda_pinned_empty(max(nbytes, 1))[:nbytes].view(dtype).reshape(shape)
