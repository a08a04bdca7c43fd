"""What the `arrcoc-rt` subcommands share: reading inputs, checking output paths before any work,
one-line errors, summaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..images import pil_to_rgb8
from ..sources import VIDEO_SUFFIXES


def _is_video(path: Path) -> bool:
    """A video file by its suffix: a known video suffix, or one that no image reader claims."""
    from PIL import Image

    suffix = path.suffix.lower()
    return suffix in VIDEO_SUFFIXES or suffix not in Image.registered_extensions()


def _read_frames(path: Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` RGB frames from an image (one frame) or a video file."""
    if not path.exists():
        raise SystemExit(f"arrcoc-rt: error: input {str(path)!r} does not exist")
    if _is_video(path):
        try:
            import av
        except ImportError:
            raise SystemExit("arrcoc-rt: error: reading video needs PyAV (a dependency of arrcoc_rt): pip install av") from None
        frames = []
        try:
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    frames.append(frame.to_ndarray(format="rgb24"))
                    if len(frames) == count:
                        break
        except av.error.FFmpegError as e:
            raise SystemExit(f"arrcoc-rt: error: cannot decode {str(path)!r}: {e}") from None
        if not frames:
            raise SystemExit(f"arrcoc-rt: error: {str(path)!r} has no decodable video frames")
        return frames
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return [pil_to_rgb8(im, f"image {str(path)!r}")]
    except (UnidentifiedImageError, OSError) as e:
        raise SystemExit(f"arrcoc-rt: error: cannot read image {str(path)!r}: {e}") from None


def _percentiles(values) -> str:
    v = np.asarray(values, np.float64)
    return f"p50 {np.percentile(v, 50):.2f}  p95 {np.percentile(v, 95):.2f}  p99 {np.percentile(v, 99):.2f} ms"


def _output_file(path, flag: str) -> None:
    """--flag PATH names a file the command writes: checked before any work (a path found wrong
    only when the results are written would lose them), by writing in its folder; an existing file
    is opened for appending (nothing in it changes) to see that it can be replaced."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise _error(f"{flag} {path}: is a folder; expected a file path")
    if not p.parent.is_dir():
        raise _error(f"{flag} {path}: the folder {str(p.parent)!r} does not exist")
    if p.exists():
        import stat

        if not stat.S_ISREG(p.stat().st_mode):  # a pipe, /dev/stdout, /dev/null: written as it is, not probed
            return  # (opening a FIFO to probe it would give its reader an end of file)
        try:
            open(p, "ab").close()
        except OSError as e:
            raise _error(f"{flag} {path}: cannot be written ({e.strerror or e})") from None
    else:
        _check_writable(p.parent, flag, path)


def _output_folder(path, flag: str, create: bool = False) -> None:
    """--flag PATH names a folder the command creates or fills: not an existing file; with
    ``create``, it is made now and checked by writing in it."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise _error(f"{flag} {path}: is a file; expected a folder")
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _error(f"{flag} {path}: cannot be created ({e.strerror or e})") from None
        _check_writable(p, flag, path)


def _check_writable(folder: Path, flag: str, path) -> None:
    # A real write: permission bits say nothing to root, an immutable or read-only mount does.
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".arrcoc-rt-write-check-"):
            pass
    except OSError as e:
        raise _error(f"{flag} {path}: cannot write in {str(folder)!r} ({e.strerror or e})") from None


def _distinct_outputs(outputs: dict, source=None) -> None:
    """Output files ({flag: path}) that name the same file, or the source being read, are refused:
    one would overwrite the other (or the input, while it is read)."""
    import os

    def same(a, b) -> bool:  # hard links and symbolic ones too, where both exist
        if Path(a).exists() and Path(b).exists():
            return os.path.samefile(a, b)
        return Path(a).resolve() == Path(b).resolve()

    seen = []
    for flag, path in outputs.items():
        if path is None:
            continue
        if source is not None and Path(str(source)).exists() and same(path, str(source)):
            raise _error(f"{flag} {path}: is the source being read; write somewhere else")
        for other_flag, other in seen:
            if same(path, other):
                raise _error(f"{other_flag} and {flag} name the same file ({path}); give each its own")
        seen.append((flag, path))


# Pipeline keywords that a command takes as flags: its messages name the flag.
_ALLOCATION_FLAGS = {"saccades": "--saccades", "total_budget": "--total-budget", "gestalt_x": "--gestalt",
                     "gestalt_y": "--gestalt", "text_floor": "--text-floor"}
_FLAG_OF = {"run": _ALLOCATION_FLAGS, "batch": _ALLOCATION_FLAGS, "train": _ALLOCATION_FLAGS,
            "ask": {"total_budget": "--budget"}}


def _as_flags(message: str, command: str = "run") -> str:
    """A Pipeline error as the command line's user reads it: 'saccades: -1 ...' -> '--saccades -1 ...'
    (for ``command``'s own flags; other messages as they are)."""
    flags = _FLAG_OF.get(command, {})
    name, sep, rest = message.partition(":")
    if sep and name in flags:
        message = f"{flags[name]}{rest}"
    if "--gestalt" in flags.values():
        message = message.replace("shrink the gestalt grid", "shrink the gestalt grid (--gestalt)")
    return message


def _error(msg: str) -> SystemExit:
    return SystemExit(f"arrcoc-rt: error: {msg}")


def _plot(timings, path, report=print) -> None:
    from ..visualize import latency_plot

    try:
        latency_plot(timings, path)
        report(f"wrote {path}")
    except RuntimeError as e:  # matplotlib missing: the requested plot cannot be written
        raise _error(f"--plot {path}: {e}; install it with pip install 'arrcoc_rt[plot]'") from None


def _summary(timings, cuts, saccades, churn, extra: str = "") -> str:
    if not timings:
        return "no frames processed" + extra
    stability = (f"saccade churn (share on new content per frame): median {np.median(churn):.3f}, "
                 f"max {np.max(churn):.3f}\n" if churn else "")
    return (f"frames: {len(timings)}; saccades per frame: mean {np.mean(saccades):.1f}\n"
            f"latency (end to end): {_percentiles([t['wall'] for t in timings])}\n" + stability +
            f"scene cuts at frames: {cuts}" + extra)


def _budget_option(value):
    """--budget: a preset name (the question's tier picks the budget) or an int total budget."""
    from ..vlm.tiers import PRESETS

    if value is None or value in PRESETS:
        return value
    try:
        return int(value)
    except ValueError:
        raise _error(f"--budget {value}: expected one of {', '.join(PRESETS)} or an int total budget") from None


def _cuda_notes(on_cuda: bool) -> None:
    """What the table's CUDA rows mean, or why there are none."""
    from .. import cuda
    from ..runtime import cuda_available

    if not cuda_available():
        print("(no CUDA GPU here: CPU only)")
        return
    if not on_cuda:
        return
    print("(cuda: the stages are host times: texture and cascade only queue their kernels, "
          "allocate_and_gather includes the wait for the device; the total is the frame's time. "
          "scripts/gpu_timings.py times a GPU frame with events)")
    if cuda.is_emulated():
        print("(cuda is the EMULATED device, on the CPU: its times mean nothing)")
