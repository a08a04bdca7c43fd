"""Runs every fuzz target (or those named) for a bounded time each, as CI does, and prints one
line per target: executions, coverage (libFuzzer's cov = edges/counters, ft = features; with a
Python-only instrumented extension these count Python branches of arrcoc_rt plus whatever native
code was built with coverage), corpus size. Exit status 1 if any target crashed, failed an
invariant, raised an exception outside the contract (ValueError/TypeError) or tripped a sanitizer.

    python fuzz/run.py --seconds 30 [--sanitized] [--seed N] [--runs] [--work DIR] [frames options ...]

The seed corpus in fuzz/corpus/<target>/ is read, never written: new inputs go to the work folder
(default: a temporary one), and so do crash files (``crash-*``), which the output names.

--seed N: libFuzzer's random seed (default 0: a new one each run). --runs: each target runs its
RUNS executions (20–60 s each under the sanitizers on a 2-core machine) rather than for a time;
--seconds is then only a cap. CI gives both, so that one commit fuzzes the same inputs on every
machine and every run: whether it lands does not hinge on chance or on the machine's speed.
Exploratory runs (longer, random seeds) are how new bugs are looked for; each one found becomes a
regression test, and its input joins the seed corpus.

--sanitized: arrcoc_rt was built with ARRCOC_SANITIZE=ON (gcc's AddressSanitizer + UBSan). Each
target then runs with, preloaded in this order, libFuzzer (a shared library made here from the
``libclang_rt.fuzzer_no_main.a`` atheris ships), gcc's libasan and libubsan. libFuzzer must come
first: libasan also defines the ``__sanitizer_cov_*`` entry points through which atheris reports
Python coverage, and the first definition wins (with libasan first, coverage is silently lost)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = ["frames", "options", "weights", "pca", "queries", "importers"]
# Executions per target with --runs: about 30 s each under ASan + UBSan on CI's 2-core machine
# (measured 2026-11-30: 1,367 / 10,447 / 5,712 / 12,521 / 22,936 / ~2,500 in 30 s).
# Sized from CI's logs (seed 1): about twice the execution at which a target last found new coverage
# (frames 1,257, options 8,001, weights 1,180, pca 151, queries 7,163, importers 1,686), where that
# fits in about 40 s under the sanitizers; importers and frames cost about 25 ms per execution.
RUNS = {"frames": 1400, "options": 10000, "weights": 2500, "pca": 3000, "queries": 12000, "importers": 2500}
MARKERS = ("Uncaught Python exception", "ERROR: AddressSanitizer", "runtime error:", "deadly signal",
           "ERROR: libFuzzer")


def sanitizer_env(work: str) -> dict:
    """LD_PRELOAD and options for targets that load an ARRCOC_SANITIZE=ON build (see above)."""
    import atheris

    lib = os.path.join(work, "libfuzzer_for_atheris.so")
    archive = os.path.join(atheris.path(), "libclang_rt.fuzzer_no_main.a")
    cxx = os.environ.get("CXX", "g++")
    subprocess.check_call([cxx, "-shared", "-o", lib, "-Wl,--whole-archive", archive, "-Wl,--no-whole-archive",
                           "-lpthread"])
    runtimes = [subprocess.check_output(["gcc", f"-print-file-name={n}"], text=True).strip()
                for n in ("libasan.so", "libubsan.so")]
    return {"LD_PRELOAD": " ".join([lib] + runtimes),
            # leaks: the interpreter's own are not ours; segv: the emulated device's fault reports go
            # to libFuzzer's handler; link order: libFuzzer is deliberately before the runtime
            "ASAN_OPTIONS": "detect_leaks=0:handle_segv=0:verify_asan_link_order=0",
            # abort: gcc's libubsan has its own death callbacks, so only SIGABRT lets libFuzzer
            # save the input that tripped it
            "UBSAN_OPTIONS": "halt_on_error=1:abort_on_error=1:print_stacktrace=1"}


def run_one(name: str, seconds: int, work: str, extra_env: dict, seed: int = 0, runs: int = -1) -> dict:
    corpus_out = os.path.join(work, "corpus", name)
    os.makedirs(corpus_out, exist_ok=True)
    seeds = os.path.join(HERE, "corpus", name)
    log = os.path.join(work, f"{name}.log")
    cmd = [sys.executable, os.path.join(HERE, f"fuzz_{name}.py"), corpus_out, seeds,
           f"-max_total_time={seconds}", f"-seed={seed}", f"-runs={runs}", "-timeout=30", "-rss_limit_mb=6144", "-detect_leaks=0",
           "-print_final_stats=1", f"-artifact_prefix={os.path.join(work, name)}-", "-max_len=8192"]
    env = dict(os.environ, ARRCOC_FUZZ_TMP=os.path.join(work, "tmp", name), **extra_env)
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=HERE)
    text = open(log, errors="replace").read()
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", text))
    done = re.findall(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE|INITED)\s+cov: (\d+) ft: (\d+) corp: (\d+)", text)
    last = done[-1] if done else ("0", "0", "0", "0")
    return {"name": name, "rc": rc, "seconds": time.time() - t0, "execs": int(stats.get("number_of_executed_units", last[0])),
            "cov": int(last[1]), "ft": int(last[2]), "corpus": int(last[3]), "log": log, "text": text}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*", default=TARGETS)
    ap.add_argument("--seconds", type=int, default=30, help="per target")
    ap.add_argument("--work", default=None, help="folder for the grown corpus, logs and crash files")
    ap.add_argument("--seed", type=int, default=0, help="libFuzzer's seed; 0: random (see above)")
    ap.add_argument("--runs", action="store_true", help="each target's RUNS executions (see above)")
    ap.add_argument("--sanitized", action="store_true", help="arrcoc_rt is an ARRCOC_SANITIZE=ON build (gcc)")
    a = ap.parse_args()
    work = os.path.abspath(a.work or tempfile.mkdtemp(prefix="arrcoc-fuzz-"))
    os.makedirs(work, exist_ok=True)
    extra_env = sanitizer_env(work) if a.sanitized else {}
    failed = []
    print(f"{'target':<10} {'seconds':>7} {'execs':>8} {'cov':>6} {'ft':>6} {'corpus':>6}  result", flush=True)
    for name in a.targets:
        r = run_one(name, a.seconds, work, extra_env, a.seed, RUNS[name] if a.runs else -1)
        ok = r["rc"] == 0 and "DONE" in r["text"]
        print(f"{name:<10} {r['seconds']:7.1f} {r['execs']:8d} {r['cov']:6d} {r['ft']:6d} {r['corpus']:6d}  "
              f"{'ok' if ok else 'FAILED (exit %d)' % r['rc']}", flush=True)
        if not ok:
            failed.append(r)
    for r in failed:
        lines = r["text"].splitlines()
        first = next((i for i, line in enumerate(lines) if any(m in line for m in MARKERS)), max(len(lines) - 40, 0))
        print(f"\n===== {r['name']}: from {r['log']}", flush=True)
        print("\n".join(line[:240] for line in lines[first:first + 40]), flush=True)
        crashes = [f for f in os.listdir(work) if f.startswith(f"{r['name']}-")]
        env = " ".join(f"{k}='{v}'" for k, v in extra_env.items())
        print(f"reproduce: {env} python fuzz/fuzz_{r['name']}.py {' '.join(os.path.join(work, c) for c in crashes)}",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
