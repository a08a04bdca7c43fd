"""The C++ side without Python: ctest of the public API on a CPU-only build (which also checks
that every CUDA entry point says "not built with CUDA"), `cmake --install` and a host project
that find_package(arrcoc)s the installed library — and the one shipped inside the wheel."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import arrcoc_rt

ROOT = Path(__file__).resolve().parents[1]
CMAKE = shutil.which("cmake")
pytestmark = pytest.mark.skipif(CMAKE is None, reason="cmake not found")


def _run(args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout


def _generator():
    return ["-G", "Ninja"] if shutil.which("ninja") else []


@pytest.fixture(scope="module")
def cpu_only_install(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cpp")
    build, prefix = tmp / "build", tmp / "prefix"
    _run([CMAKE, "-S", ROOT, "-B", build, *_generator(), "-DARRCOC_CUDA=OFF", "-DARRCOC_BUILD_TESTS=ON",
          "-DARRCOC_PYTHON=OFF", "-DCMAKE_BUILD_TYPE=Release"])
    _run([CMAKE, "--build", build, "--parallel", str(os.cpu_count() or 2)])
    _run([CMAKE, "--install", build, "--prefix", prefix])
    return build, prefix


def test_ctest(cpu_only_install):
    build, _ = cpu_only_install
    out = _run(["ctest", "--test-dir", build, "--output-on-failure"])
    assert "100% tests passed" in out


def _consumer(prefix, tmp_path, project=ROOT / "tests" / "cpp" / "consumer", exe="arrcoc_consumer", args=()):
    build = tmp_path / exe
    _run([CMAKE, "-S", project, "-B", build, *_generator(), f"-DCMAKE_PREFIX_PATH={prefix}"])
    _run([CMAKE, "--build", build])
    return _run([build / exe, *args])


def test_find_package_from_cmake_install(cpu_only_install, tmp_path):
    _, prefix = cpu_only_install
    assert (prefix / "include" / "arrcoc" / "arrcoc.h").exists()
    out = _consumer(prefix, tmp_path)
    assert "texture 320x240" in out and "oversized frame -> OutOfRange" in out


def _pkg_config_flags(pc: Path) -> list:
    """``pkg-config --cflags --libs`` of an arrcoc.pc (pkg-config itself when installed, else the
    file's variables expanded here: the host build the file is for needs no CMake)."""
    env = dict(os.environ, PKG_CONFIG_PATH=str(pc.parent))
    if shutil.which("pkg-config"):
        return _run(["pkg-config", "--cflags", "--libs", "arrcoc"], env=env).split()
    values = {"pcfiledir": str(pc.parent)}
    fields = {}
    for line in pc.read_text().splitlines():
        if "=" in line and ":" not in line.split("=")[0] and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
        elif ": " in line:
            key, value = line.split(": ", 1)
            fields[key] = value
    expand = lambda text: __import__("re").sub(r"\$\{(\w+)\}", lambda m: expand(values[m.group(1)]), text)  # noqa: E731
    return expand(fields["Cflags"]).split() + expand(fields["Libs"]).split()


def test_pkg_config_builds_a_host_without_cmake(cpu_only_install, tmp_path):
    """<libdir>/pkgconfig/arrcoc.pc: a host built by a plain compiler call (make, meson) from the
    installed tree; its paths are relative to the file, so the tree can move (copied here)."""
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    _, prefix = cpu_only_install
    moved = tmp_path / "moved"
    shutil.copytree(prefix, moved, symlinks=True)
    pcs = list(moved.glob("**/pkgconfig/arrcoc.pc"))
    assert len(pcs) == 1, pcs
    assert f"Version: {arrcoc_rt.__version__}" in pcs[0].read_text()
    exe = tmp_path / "host"
    _run([compiler, "-std=c++17", ROOT / "tests" / "cpp" / "consumer" / "main.cpp", "-o", exe,
          *_pkg_config_flags(pcs[0])])
    out = _run([exe])
    assert "texture 320x240" in out and "oversized frame -> OutOfRange" in out


def test_find_package_from_the_python_package(tmp_path):
    prefix = Path(arrcoc_rt.cmake_prefix_path())
    if not (prefix / "lib" / "cmake" / "arrcoc" / "arrcocConfig.cmake").exists():
        pytest.skip("this arrcoc_rt install carries no CMake package (editable install?)")
    # one copy of the library (a wheel cannot hold symlinks: each name was a 5.8 MB copy), named by
    # its soname, which the module loads and the exported target names
    assert sorted(p.name for p in (prefix / "lib").glob("libarrcoc_core*")) == [
        "libarrcoc_core.so." + ".".join(arrcoc_rt.__version__.split(".")[:2])]
    out = _consumer(prefix, tmp_path)
    assert f"arrcoc {arrcoc_rt.__version__}" in out


def test_pkg_config_from_the_python_package(tmp_path):
    """The wheel's arrcoc.pc links its one library file (a wheel holds no libarrcoc_core.so link:
    `-larrcoc_core` found nothing there)."""
    prefix = Path(arrcoc_rt.cmake_prefix_path())
    pcs = list((prefix / "lib" / "pkgconfig").glob("arrcoc.pc"))
    if not pcs:
        pytest.skip("this arrcoc_rt install carries no pkg-config file (editable install?)")
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path / "host"
    _run([compiler, "-std=c++17", ROOT / "tests" / "cpp" / "consumer" / "main.cpp", "-o", exe,
          *_pkg_config_flags(pcs[0])])
    out = _run([exe])
    assert "texture 320x240" in out and "oversized frame -> OutOfRange" in out


def test_the_library_exports_only_its_public_api():
    """libarrcoc_core is built with hidden visibility: a program that embeds it sees the API its
    headers mark ARRCOC_API, not the backends and helpers (198 symbols before, 98 now), nor the
    static CUDA runtime's. The emulated test build also exports the emulator's CUDA API."""
    if shutil.which("nm") is None:
        pytest.skip("no nm (binutils)")
    with open("/proc/self/maps") as maps:  # the library this process loaded
        lib = next((line.split()[-1] for line in maps if "libarrcoc_core" in line), None)
    assert lib, "libarrcoc_core is not loaded"
    out = subprocess.run(["nm", "-D", "--defined-only", "-C", lib], capture_output=True, text=True, check=True).stdout
    internal = [line for line in out.splitlines()
                if any(k in line for k in ("arrcoc::cpu::", "arrcoc::cuda::", "arrcoc::math::", "arrcoc::Arena", " cudart"))]
    assert not internal, "\n".join(internal[:20])
    for public in ("arrcoc::TextureBuilder::create", "arrcoc::Pipeline::process", "arrcoc::status_code_name",
                   "arrcoc::TextureView::plane_offset", "arrcoc::cuda_malloc"):
        assert public in out, public


@pytest.mark.parametrize("value, says", [("off", "CUDA backend OFF, emulated OFF"), ("0", "CUDA backend OFF, emulated OFF"),
                                         ("Emulate", "emulated ON"), ("bogus", "ARRCOC_CUDA=bogus: expected AUTO, ON")])
def test_arrcoc_cuda_takes_any_case_and_refuses_unknown_values(tmp_path, value, says):
    """-DARRCOC_CUDA (and pip's ARRCOC_CUDA=...) as CMake reads booleans: 'off' was read as AUTO."""
    r = subprocess.run([CMAKE, "-S", ROOT, "-B", tmp_path / "b", *_generator(), f"-DARRCOC_CUDA={value}",
                        "-DARRCOC_PYTHON=OFF"], capture_output=True, text=True)
    assert says in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    assert (r.returncode != 0) == (value == "bogus")


def test_cpp_host_example(cpu_only_install, tmp_path):
    """examples/cpp_host: the whole pipeline from C++ through find_package, no Python."""
    _, prefix = cpu_only_install
    out = _consumer(prefix, tmp_path, ROOT / "examples" / "cpp_host", "arrcoc_cpp_host", ("4", "320", "240"))
    lines = [l for l in out.splitlines() if l.startswith("frame ")]
    assert len(lines) == 4 and all("saccades" in l and "top token" in l for l in lines), out
