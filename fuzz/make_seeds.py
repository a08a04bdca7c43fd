"""Writes the seed corpus fuzz/corpus/<target>/ (committed; rerun only to change it):
    python fuzz/make_seeds.py
Structured targets get a few fixed pseudo-random inputs (every byte is a choice of the target's
FuzzedDataProvider). Targets that also take a whole file get real files — a weights .npz and
.json, PCA .npz files, PNG/JPEG/BMP/GIF exemplars — with the trailing bytes that select the
target's file mode (atheris' FuzzedDataProvider reads integers from the end of the input)."""

from __future__ import annotations

import io
import json
import os
import shutil

import atheris
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")


def with_choices(body: bytes, choices) -> bytes:
    """``body`` + the shortest suffix for which a FuzzedDataProvider makes these choices first:
    [(method, args, wanted)], e.g. ("ConsumeIntInRange", (0, 2), 0)."""
    suffix = []
    for i in range(len(choices)):
        for b in range(256):
            data = body + bytes([b] + suffix)
            f = atheris.FuzzedDataProvider(data)
            if all(getattr(f, m)(*a) == want for m, a, want in choices[: i + 1]):
                suffix.insert(0, b)
                break
        else:
            raise RuntimeError(f"no byte gives choice {choices[i]}")
    return body + bytes(suffix)


def npz(**arrays) -> bytes:
    b = io.BytesIO()
    np.savez_compressed(b, **arrays)
    return b.getvalue()


def image(fmt: str) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(7)
    a = np.zeros((16, 16, 3), np.uint8)
    a[4:12, 4:12] = (220, 40, 30)
    a += rng.integers(0, 20, a.shape, dtype=np.uint8)
    b = io.BytesIO()
    Image.fromarray(a).save(b, format=fmt)
    return b.getvalue()


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    rng = np.random.default_rng(20261130)
    seeds = {}
    for target in ("frames", "options", "weights", "pca", "queries", "importers"):
        seeds[target] = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (96, 384, 1024, 2048)]

    # weights: the bytes are the file (mode 0), named .npz / .json
    import arrcoc_rt.weights as W

    w = W.default_weights()
    raw = lambda body, name: with_choices(body, [("ConsumeIntInRange", (0, 2), 0),  # noqa: E731
                                                 ("PickValueInList", (["w.npz", "w.json", "w.txt", "w"],), name)])
    small = {k: np.zeros(1, np.float32) for k in W.SHAPES}
    seeds["weights"] += [raw(npz(**w), "w.npz"), raw(npz(**small), "w.npz"),
                         raw(json.dumps({k: v.tolist() for k, v in small.items()}).encode(), "w.json"),
                         raw(json.dumps({"W1": [[0.5, 0.5, 0.5]] * 2, "mix": [0.4, 0.3, 0.3]}).encode(), "w.json")]
    # pca: the bytes are the .npz (mode 0)
    pca = lambda body: with_choices(body, [("ConsumeIntInRange", (0, 2), 0)])  # noqa: E731
    comps = np.linalg.qr(rng.standard_normal((32, 16)))[0].T.astype(np.float32)
    seeds["pca"] += [pca(npz(mean=np.full(32, 0.1, np.float32), components=comps, n=np.int64(100))),
                     pca(npz(mean=np.zeros(8, np.float32), components=np.eye(16, 8, dtype=np.float32)))]
    # queries: an exemplar file (mode 0), then w, h and the file name
    for fmt, name in (("PNG", "q.png"), ("JPEG", "q.jpg"), ("BMP", "q.bmp"), ("GIF", "q")):
        seeds["queries"].append(with_choices(image(fmt), [("ConsumeIntInRange", (0, 3), 0),
                                                          ("ConsumeIntInRange", (1, 48), 32),
                                                          ("ConsumeIntInRange", (1, 40), 24),
                                                          ("PickValueInList", (["q.png", "q.jpg", "q.bmp", "q"],),
                                                           name)]))
    for target, items in seeds.items():
        os.makedirs(os.path.join(OUT, target), exist_ok=True)
        for i, data in enumerate(items):
            with open(os.path.join(OUT, target, f"seed-{i:02d}"), "wb") as f:
                f.write(data)
        print(target, len(items), "seeds,", sum(map(len, items)), "bytes")


if __name__ == "__main__":
    main()
