"""Which backends this build has and which devices this machine offers."""

from __future__ import annotations

from . import _native


def cuda_built() -> bool:
    """True when the CUDA backend was compiled in."""
    return bool(_native.built_with_cuda())


def cuda_available() -> bool:
    """True when the CUDA backend is compiled in and at least one GPU is usable."""
    return cuda_built() and _native.cuda_device_count() > 0


def devices() -> list[str]:
    """Devices the backends can run on here: always 'cpu', plus 'cuda:N' per usable GPU."""
    return ["cpu"] + [f"cuda:{i}" for i in range(_native.cuda_device_count() if cuda_built() else 0)]


def resolve_device(device: str) -> tuple[str, int]:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> ('cpu'|'cuda', ordinal), with clear errors. 'cuda' (and
    'auto' on a GPU) is the calling thread's current device, as in torch: 0 unless
    ``arrcoc_rt.cuda.set_device`` (or torch's) changed it."""
    if not isinstance(device, str):
        raise TypeError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'; got {type(device).__name__}")
    if device == "auto":
        return ("cuda", _native.cuda_current_device()) if cuda_available() else ("cpu", 0)
    if device == "cpu":
        return "cpu", 0
    if device == "cuda" or device.startswith("cuda:"):
        try:
            ordinal = int(device.split(":", 1)[1]) if ":" in device else 0
        except ValueError:
            raise ValueError(f"device: {device!r} is not understood; expected 'cuda' or 'cuda:N'") from None
        if not cuda_built():
            raise ValueError(f"device: {device!r} was requested but arrcoc_rt was built without CUDA "
                             "(no nvcc at build time, or ARRCOC_CUDA=OFF); use device='cpu' or 'auto'")
        n = _native.cuda_device_count()
        if n == 0:
            raise ValueError(f"device: {device!r} was requested but no CUDA GPU is usable on this machine "
                             "(no GPU or no driver); use device='cpu' or 'auto'")
        if ordinal >= n:
            raise ValueError(f"device: {device!r} does not exist; this machine has {n} CUDA device(s)")
        return "cuda", ordinal if ":" in device else _native.cuda_current_device()
    raise ValueError(f"device: {device!r} is not understood; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def device_string(kind: str, ordinal: int) -> str:
    """('cpu', _) -> 'cpu'; ('cuda', N) -> 'cuda:N': what resolve_device() takes back."""
    return "cpu" if kind == "cpu" else f"cuda:{ordinal}"


def cuda_emulated() -> bool:
    """True in a test build (ARRCOC_CUDA=EMULATE) whose CUDA devices are the CPU emulation."""
    return cuda_built() and bool(_native.cuda_emulated())


def info() -> dict:
    """Version, build and device facts (what `arrcoc-rt info` prints)."""
    n = _native.cuda_device_count() if cuda_built() else 0
    return {
        "version": _native.version(),
        "cuda_built": cuda_built(),
        "cuda_emulated": cuda_emulated(),
        "cuda_devices": [_native.cuda_device_name(i) for i in range(n)],
        "devices": devices(),
    }
