"""The compiled core (arrcoc_rt._arrcoc), with a clear message when it is missing."""

try:
    from ._arrcoc import *  # noqa: F401,F403
    from ._arrcoc import ClusterCascade, DeviceArray, TextureBuilder, TokenAllocator, _export_host_memory_for_test, dlpack_tensor_info  # noqa: F401
except ImportError as e:  # pragma: no cover - only on a broken install
    raise ImportError(
        "arrcoc_rt's compiled core (_arrcoc) could not be loaded: " + str(e) +
        ". Reinstall with `pip install .` from the project root (a C++17 compiler and CMake are needed)."
    ) from e
