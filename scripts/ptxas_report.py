#!/usr/bin/env python3
"""ptxas report of every CUDA kernel: registers, stack frame, spills, shared memory, launch bounds
and theoretical occupancy, per architecture (default sm_90).

    python3 scripts/ptxas_report.py [--arch 90 --arch 75 ...] [--out build/ptxas_report]

Compiles each csrc/cuda/*.cu with the nvcc flags of CMakeLists.txt plus -Xptxas -v, writes
OUT.json and OUT.md, and exits with 1 when any kernel uses local memory: spill stores or loads, or
a stack frame (a per-thread array the compiler could not keep in registers costs the same memory
traffic as a spill). tests/test_ptxas.py runs it where nvcc exists.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Per SM: registers, resident threads, resident blocks, shared memory (bytes); registers are
# allocated per warp in units of 256, shared memory in units of 128 bytes plus 1 KB the runtime
# reserves per block (sm_80 and later). From the CUDA programming guide's compute capability table.
ARCH_LIMITS = {
    "75": dict(regs=65536, threads=1024, blocks=16, smem=64 * 1024, smem_reserved=0),
    "80": dict(regs=65536, threads=2048, blocks=32, smem=164 * 1024, smem_reserved=1024),
    "86": dict(regs=65536, threads=1536, blocks=16, smem=100 * 1024, smem_reserved=1024),
    "89": dict(regs=65536, threads=1536, blocks=24, smem=100 * 1024, smem_reserved=1024),
    "90": dict(regs=65536, threads=2048, blocks=32, smem=228 * 1024, smem_reserved=1024),
}
REG_UNIT = 256
SMEM_UNIT = 128

# Compile definitions CMakeLists.txt gives the CUDA sources of arrcoc_core (Release build).
DEFINES = ["-DNDEBUG", "-DARRCOC_WITH_CUDA=1", '-DARRCOC_VERSION="ptxas-report"']


def cmake_cuda_flags(cmakelists: Path = ROOT / "CMakeLists.txt") -> list[str]:
    """The CUDA compile options of arrcoc_core, read from CMakeLists.txt so the report stays in step."""
    m = re.search(r"\$<\$<COMPILE_LANGUAGE:CUDA>:([^>]*)>", cmakelists.read_text())
    if not m:
        raise RuntimeError(f"no $<$<COMPILE_LANGUAGE:CUDA>:...> options in {cmakelists}")
    return m.group(1).split()


def nvcc_command(nvcc: str, source: Path, archs: list[str], obj: Path, keep_dir: Path) -> list[str]:
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    return [nvcc, "-c", str(source), "-o", str(obj), "-std=c++17", *cmake_cuda_flags(), *DEFINES,
            f"-I{ROOT / 'csrc' / 'include'}", *gencode, "-Xptxas", "-v", "-keep", f"-keep-dir={keep_dir}"]


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_BARRIERS = re.compile(r"used (\d+) barriers")


def parse_ptxas(text: str) -> list[dict]:
    """Kernels (entry functions) of ptxas -v output: mangled name, arch, registers, stack frame,
    spill stores/loads, static shared memory, barriers."""
    kernels, current, props_of = [], None, None
    for line in text.splitlines():
        if m := _ENTRY.search(line):
            current = dict(mangled=m.group(1), arch=m.group(2).removeprefix("sm_"), registers=0, stack_frame=0,
                           spill_stores=0, spill_loads=0, shared_bytes=0, barriers=0)
            kernels.append(current)
            props_of = None
        elif m := _PROPS.search(line):
            props_of = m.group(1)  # also printed for non-inlined device functions: keep entries only
        elif (m := _FRAME.search(line)) and current and props_of == current["mangled"]:
            current.update(stack_frame=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        elif (m := _USED.search(line)) and current and props_of == current["mangled"]:
            current["registers"] = int(m.group(1))
            if s := _SMEM.search(line):
                current["shared_bytes"] = int(s.group(1))
            if b := _BARRIERS.search(line):
                current["barriers"] = int(b.group(1))
    return kernels


_PTX_ENTRY = re.compile(r"^(?:\.visible\s+)?\.entry\s+(\S+?)\(", re.M)
_MAXNTID = re.compile(r"^\s*\.maxntid\s+(\d+),\s*(\d+),\s*(\d+)", re.M)


def parse_launch_bounds(ptx: str) -> dict[str, int]:
    """Max threads per block (.maxntid, from __launch_bounds__) of each entry of a PTX file."""
    out = {}
    entries = list(_PTX_ENTRY.finditer(ptx))
    for k, e in enumerate(entries):
        body = ptx[e.end(): entries[k + 1].start() if k + 1 < len(entries) else len(ptx)]
        head = body.split("{", 1)[0]  # directives sit between the parameter list and the body
        if m := _MAXNTID.search(head):
            out[e.group(1)] = int(m.group(1)) * int(m.group(2)) * int(m.group(3))
    return out


def occupancy(arch: str, registers: int, shared_bytes: int, block: int) -> dict | None:
    """Theoretical occupancy of a kernel launched with `block` threads: resident blocks per SM, the
    share of the SM's threads they fill, and what limits them."""
    lim = ARCH_LIMITS.get(arch)
    if lim is None or block <= 0:
        return None
    warps = -(-block // 32)
    regs_per_warp = -(-max(registers, 1) * 32 // REG_UNIT) * REG_UNIT
    by = {
        "registers": (lim["regs"] // regs_per_warp) // warps,
        "threads": (lim["threads"] // 32) // warps,
        "blocks": lim["blocks"],
    }
    block_smem = -(-(shared_bytes + lim["smem_reserved"]) // SMEM_UNIT) * SMEM_UNIT
    if block_smem:
        by["shared memory"] = lim["smem"] // block_smem
    blocks = min(by.values())
    limiter = min(by, key=lambda k: (by[k], k != "threads"))
    return dict(block=block, blocks_per_sm=blocks, occupancy=blocks * warps * 32 / lim["threads"],
                limited_by=limiter if blocks else "cannot launch")


def demangle(names: list[str]) -> dict[str, str]:
    cxxfilt = shutil.which("c++filt")
    if not cxxfilt or not names:
        return {n: n for n in names}
    out = subprocess.run([cxxfilt], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return dict(zip(names, out.splitlines()))


def short_name(demangled: str) -> str:
    """`ns::(anonymous namespace)::kernel<T>(args)` -> `kernel<T>`."""
    name, depth, cut = demangled, 0, len(demangled)
    for k, ch in enumerate(name):  # the argument list starts at the first '(' outside template brackets
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "(" and depth == 0 and not name.startswith("(anonymous namespace)", k):
            cut = k
            break
    name = name[:cut]
    depth, last = 0, 0
    for k, ch in enumerate(name):
        depth += ch == "<"
        depth -= ch == ">"
        if depth == 0 and name.startswith("::", k):
            last = k + 2
    return name[last:]


def compile_file(source: Path, archs: list[str], nvcc: str, default_block: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="ptxas_") as tmp:
        tmp = Path(tmp)
        cmd = nvcc_command(nvcc, source, archs, tmp / (source.stem + ".o"), tmp)
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0:
            raise RuntimeError(f"nvcc failed on {source}:\n{' '.join(cmd)}\n{r.stdout}{r.stderr}")
        kernels = parse_ptxas(r.stdout + r.stderr)
        bounds = {}
        for ptx in tmp.glob("*.ptx"):
            bounds.update(parse_launch_bounds(ptx.read_text()))
    names = demangle(sorted({k["mangled"] for k in kernels}))
    for k in kernels:
        k["file"] = source.relative_to(ROOT).as_posix() if source.is_relative_to(ROOT) else str(source)
        k["name"] = names[k["mangled"]]
        k["kernel"] = short_name(k["name"])
        k["launch_bounds"] = bounds.get(k["mangled"])
        k["local_memory"] = k["stack_frame"] + k["spill_stores"] + k["spill_loads"] > 0
        k["occupancy"] = occupancy(k["arch"], k["registers"], k["shared_bytes"], k["launch_bounds"] or default_block)
    return sorted(kernels, key=lambda k: (k["arch"], k["kernel"]))


def report(sources: list[Path] | None = None, archs: tuple[str, ...] = ("90",), nvcc: str | None = None,
           jobs: int = 2, default_block: int = 256) -> dict:
    """Compiles `sources` (default: every csrc/cuda/*.cu) and returns the report as a dict."""
    nvcc = nvcc or shutil.which("nvcc")
    if not nvcc:
        raise RuntimeError("nvcc not found on PATH")
    sources = sorted(sources or (ROOT / "csrc" / "cuda").glob("*.cu"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        per_file = list(pool.map(lambda s: compile_file(Path(s), list(archs), nvcc, default_block), sources))
    version = re.search(r"release [\d.]+, V[\d.]+", subprocess.run([nvcc, "--version"], capture_output=True,
                                                                     text=True).stdout)
    return dict(date=datetime.date.today().isoformat(), nvcc=f"nvcc {version.group(0) if version else '?'}",
                archs=list(archs),
                flags=["-std=c++17", *cmake_cuda_flags(), *DEFINES], default_block=default_block,
                kernels=[k for ks in per_file for k in ks])


def markdown(rep: dict) -> str:
    lines = [f"ptxas report, {rep['date']}, {rep['nvcc']}; flags: `{' '.join(rep['flags'])}`.",
             f"Occupancy at the kernel's `__launch_bounds__`, else at {rep['default_block']} threads per block "
             "(marked *); shared memory is static (no kernel uses dynamic shared memory).", "",
             "| file | kernel | arch | registers | stack frame (B) | spill stores / loads (B) | shared (B) "
             "| launch bounds | occupancy (blocks/SM, limited by) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for k in rep["kernels"]:
        occ = k["occupancy"]
        occ_s = "—" if occ is None else (f"{occ['occupancy']:.0%} at {occ['block']}{'' if k['launch_bounds'] else '*'}"
                                         f" ({occ['blocks_per_sm']}, {occ['limited_by']})")
        lines.append(f"| {Path(k['file']).name} | `{k['kernel']}` | sm_{k['arch']} | {k['registers']} | {k['stack_frame']} "
                     f"| {k['spill_stores']} / {k['spill_loads']} | {k['shared_bytes']} | {k['launch_bounds'] or '—'} "
                     f"| {occ_s} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", action="append", help="compute capability without the dot (repeatable; default 90)")
    ap.add_argument("--out", default=str(ROOT / "build" / "ptxas_report"),
                    help="output path without extension: writes OUT.md and OUT.json (default build/ptxas_report)")
    ap.add_argument("--nvcc", default=os.environ.get("NVCC"), help="nvcc to use (default: the one on PATH)")
    ap.add_argument("--jobs", type=int, default=2, help="files compiled at once (default 2)")
    ap.add_argument("--default-block", type=int, default=256,
                    help="threads per block for the occupancy of kernels without __launch_bounds__ (default 256)")
    ap.add_argument("sources", nargs="*", type=Path, help=".cu files (default: csrc/cuda/*.cu)")
    args = ap.parse_args(argv)
    rep = report([s.resolve() for s in args.sources] or None, tuple(args.arch or ["90"]), args.nvcc, args.jobs,
                 args.default_block)
    out = Path(re.sub(r"\.(md|json)$", "", args.out))
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(rep, indent=1) + "\n")
    table = markdown(rep)
    Path(f"{out}.md").write_text(table)
    print(table, end="")
    bad = [k for k in rep["kernels"] if k["local_memory"]]
    for k in bad:
        print(f"LOCAL MEMORY: {k['file']} {k['kernel']} sm_{k['arch']}: stack frame {k['stack_frame']} B, "
              f"spill stores {k['spill_stores']} B, spill loads {k['spill_loads']} B", file=sys.stderr)
    print(f"wrote {out}.md and {out}.json: {len(rep['kernels'])} kernels, {len(bad)} using local memory",
          file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
