"""Float64 NumPy reference of every stage: the test oracle.

Plain, vectorized NumPy written from the formulas in docs/CHANNELS.md, independent of the
C++ code. Integer parts (pixel-format conversion, integer luma, the entropy histogram and
block matching) are exact, so backends must match them bit for bit; float parts are float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NUM_CHANNELS = 40
NUM_LEVELS = 5

_LEVEL0 = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16)
_NOT_YET_COMPUTED = (13, *range(17, 35), 37, 38, 39)


def channel_base_level(c: int) -> int:
    """Finest mip level at which channel ``c`` is stored (mirrors csrc/include/arrcoc/channels.h)."""
    return 1 if c == 11 else 2 if c == 13 else 4 if c >= 17 else 0


def level_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """(width, height) of levels 0..4: each half the one above, rounding up."""
    sizes = []
    w, h = width, height
    for _ in range(NUM_LEVELS):
        sizes.append((w, h))
        w, h = (w + 1) // 2, (h + 1) // 2
    return sizes


# ----------------------------------------------------------------------------- input


def yuv_to_rgb8(y, u, v) -> np.ndarray:
    """BT.601 limited range, 8.8 fixed point, exactly as csrc/shared/texture_math.h."""
    c = y.astype(np.int64) - 16
    d = u.astype(np.int64) - 128
    e = v.astype(np.int64) - 128
    r = np.clip((298 * c + 409 * e + 128) >> 8, 0, 255)
    g = np.clip((298 * c - 100 * d - 208 * e + 128) >> 8, 0, 255)
    b = np.clip((298 * c + 516 * d + 128) >> 8, 0, 255)
    return np.stack([r, g, b], axis=-1)


def frame_to_rgb8(frame, pixel_format: str | None = None) -> np.ndarray:
    """Any supported frame (NumPy arrays only) -> H x W x 3 int64 RGB."""
    if pixel_format in ("nv12", "yuv420p"):
        y = np.asarray(frame[0])
        h, w = y.shape
        if pixel_format == "nv12":
            uv = np.asarray(frame[1]).reshape(y.shape[0] // 2 + y.shape[0] % 2, -1)
            u, v = uv[:, 0::2], uv[:, 1::2]
        else:
            u, v = np.asarray(frame[1]), np.asarray(frame[2])
        up = np.repeat(np.repeat(u, 2, axis=0), 2, axis=1)[:h, :w]
        vp = np.repeat(np.repeat(v, 2, axis=0), 2, axis=1)[:h, :w]
        return yuv_to_rgb8(y, up, vp)
    a = np.asarray(frame)
    if pixel_format == "rgbp":  # 3 x H x W planes
        return np.moveaxis(a.astype(np.int64), 0, 2)
    if a.ndim == 2:
        return np.repeat(a[..., None].astype(np.int64), 3, axis=2)
    a = a.astype(np.int64)
    if pixel_format in ("bgr24", "bgra32"):
        return a[..., [2, 1, 0]]
    return a[..., :3]


# ----------------------------------------------------------------------------- helpers


def _pad(a, r):
    return np.pad(a, r, mode="edge")


def _box5_sum(a):
    """Sum over the edge-replicated 5x5 window of each element."""
    h, w = a.shape
    p = _pad(a, 2)
    out = np.zeros_like(a, dtype=np.result_type(a, np.float64) if a.dtype.kind == "f" else np.int64)
    for dy in range(5):
        for dx in range(5):
            out = out + p[dy : dy + h, dx : dx + w]
    return out


def mip_down(a: np.ndarray) -> np.ndarray:
    """One 2x2 box level down; odd sizes replicate their last row/column (= mean of what exists)."""
    if a.shape[-2] % 2:
        a = np.concatenate([a, a[..., -1:, :]], axis=-2)
    if a.shape[-1] % 2:
        a = np.concatenate([a, a[..., :, -1:]], axis=-1)
    return 0.25 * ((a[..., 0::2, 0::2] + a[..., 0::2, 1::2]) + (a[..., 1::2, 0::2] + a[..., 1::2, 1::2]))


def level_coord(index, src_level: int, dst_level: int):
    """Texel coordinate in ``dst_level`` of the centre of texel ``index`` of ``src_level``."""
    return (np.asarray(index, dtype=np.float64) + 0.5) * 2.0 ** (src_level - dst_level) - 0.5


def sample_bilinear(p: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear samples of plane ``p`` on the grid ys x xs (texel centres at integers), edge-replicated."""
    h, w = p.shape
    x0 = np.floor(xs)
    y0 = np.floor(ys)
    tx = (xs - x0)[None, :]
    ty = (ys - y0)[:, None]
    xa = np.clip(x0.astype(np.int64), 0, w - 1)
    xb = np.clip(x0.astype(np.int64) + 1, 0, w - 1)
    ya = np.clip(y0.astype(np.int64), 0, h - 1)
    yb = np.clip(y0.astype(np.int64) + 1, 0, h - 1)
    a, b = p[np.ix_(ya, xa)], p[np.ix_(ya, xb)]
    c, d = p[np.ix_(yb, xa)], p[np.ix_(yb, xb)]
    top = a + (b - a) * tx
    bottom = c + (d - c) * tx
    return top + (bottom - top) * ty


def upsample_to_level(plane: np.ndarray, src_level: int, dst_level: int, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling of a level-``src_level`` plane onto the texel grid of ``dst_level``."""
    w, h = size
    return sample_bilinear(plane, level_coord(np.arange(w), dst_level, src_level),
                           level_coord(np.arange(h), dst_level, src_level))


# ----------------------------------------------------------------------------- channels


def point_channels(rgb8: np.ndarray):
    rgb = rgb8.astype(np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    lum = 0.299 * r + 0.587 * g + 0.114 * b
    return r, g, b, lum, r - g, b - 0.5 * (r + g)


def luma8(rgb8: np.ndarray) -> np.ndarray:
    return (77 * rgb8[..., 0] + 150 * rgb8[..., 1] + 29 * rgb8[..., 2] + 128) >> 8


def eccentricity(width: int, height: int, fixation=(0.5, 0.5)) -> np.ndarray:
    du = (np.arange(width) + 0.5) / width - fixation[0]
    dv = (np.arange(height) + 0.5) / height - fixation[1]
    return np.minimum(1.0, np.sqrt(du[None, :] ** 2 + dv[:, None] ** 2) * np.sqrt(2.0))


def gradients(lum: np.ndarray):
    """Sobel/8 gx, gy, magnitude and |4-neighbour Laplacian|/4, edge-replicated."""
    h, w = lum.shape
    p = _pad(lum, 1)

    def s(dy, dx):
        return p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    gx = ((s(-1, 1) + 2 * s(0, 1) + s(1, 1)) - (s(-1, -1) + 2 * s(0, -1) + s(1, -1))) / 8.0
    gy = ((s(1, -1) + 2 * s(1, 0) + s(1, 1)) - (s(-1, -1) + 2 * s(-1, 0) + s(-1, 1))) / 8.0
    hp = np.abs(s(-1, 0) + s(0, -1) + s(0, 1) + s(1, 0) - 4 * lum) / 4.0
    return gx, gy, np.sqrt(gx * gx + gy * gy), hp


def local_contrast(y8: np.ndarray) -> np.ndarray:
    """Standard deviation of luma8 over the edge-replicated 5x5 window, / 255 (exact integer moments)."""
    y = y8.astype(np.int64)
    s1 = _box5_sum(y)
    s2 = _box5_sum(y * y)
    return np.sqrt((25 * s2 - s1 * s1).astype(np.float64)) / (25.0 * 255.0)


def local_entropy(y8: np.ndarray) -> np.ndarray:
    """Entropy of the 8-bin histogram of luma8 >> 5 over the 5x5 window, divided by log2(8)."""
    bins = y8 >> 5
    s = np.zeros(y8.shape, dtype=np.float64)
    for b in range(8):
        c = _box5_sum((bins == b).astype(np.int64)).astype(np.float64)
        s += np.where(c > 1, c * np.log2(np.maximum(c, 1.0)), 0.0)
    return np.maximum(0.0, np.log2(25.0) - s / 25.0) / 3.0


SALIENCY_BLOCK = 8  # level-1 texels per side of the blocks whose maxima count the peaks


def repetition_gain(values) -> float:
    """(1 - mbar/M)^2 of non-negative values: M the largest, mbar the mean of the others (after
    Itti-Koch's map normalization: peaks that repeat everywhere weigh little; 0 when all are 0)."""
    v = np.asarray(values, np.float64).ravel()
    peak = float(v.max()) if v.size else 0.0
    if peak <= 0.0:
        return 0.0
    mean_others = (float(v.sum()) - peak) / (v.size - 1) if v.size > 1 else 0.0
    return (1.0 - mean_others / peak) ** 2


def saliency_gain(cs: np.ndarray) -> float:
    """The repetition gain of a centre-surround map's 8x8-block maxima."""
    h, w = cs.shape
    bh, bw = -(-h // SALIENCY_BLOCK), -(-w // SALIENCY_BLOCK)
    padded = np.pad(cs, ((0, bh * SALIENCY_BLOCK - h), (0, bw * SALIENCY_BLOCK - w)))  # maps are >= 0
    return repetition_gain(padded.reshape(bh, SALIENCY_BLOCK, bw, SALIENCY_BLOCK).max(axis=(1, 3)))


def saliency_level1(pyramids) -> np.ndarray:
    """Saliency at level 1; ``pyramids[f][k]`` for f in (L, R-G, B-Y): each feature's
    centre-surround map scaled by its gain (peaks that repeat everywhere count little), weighted
    (1, 1/2, 1/2) and averaged, in [0, 1]."""
    h1, w1 = pyramids[0][1].shape
    acc = np.zeros((h1, w1))
    for f, weight in zip(range(3), (1.0, 0.5, 0.5)):
        P = pyramids[f]
        c1 = P[1]
        c2 = upsample_to_level(P[2], 2, 1, (w1, h1))
        s3 = upsample_to_level(P[3], 3, 1, (w1, h1))
        s4 = upsample_to_level(P[4], 4, 1, (w1, h1))
        cs = 0.5 * (np.abs(c1 - s3) + np.abs(c2 - s4))
        acc += weight * saliency_gain(cs) * cs
    return acc / 3.0


def luma_sums_level2(y8: np.ndarray) -> np.ndarray:
    """Exact sums of luma8 over 4x4 pixel blocks (edge-replicated) = level-2 luma for matching."""
    h, w = y8.shape
    h2, w2 = (h + 3) // 4, (w + 3) // 4
    p = np.pad(y8.astype(np.int64), ((0, 4 * h2 - h), (0, 4 * w2 - w)), mode="edge")
    return p.reshape(h2, 4, w2, 4).sum(axis=(1, 3))


def block_match(cur: np.ndarray, prev: np.ndarray, radius: int = 4, block: int = 4):
    """Integer full-search SAD of 4x4-texel blocks; ties to the shorter, then the first vector.

    Returns (mx, my) per block in level-0 pixels (motion = -displacement * 4).
    """
    h2, w2 = cur.shape
    hb, wb = -(-h2 // block), -(-w2 // block)
    rows, cols = np.arange(h2), np.arange(w2)
    best = np.full((hb, wb), np.iinfo(np.int64).max)
    best_d2 = np.full((hb, wb), np.iinfo(np.int64).max)
    bdx = np.zeros((hb, wb), np.int64)
    bdy = np.zeros((hb, wb), np.int64)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = prev[np.ix_(np.clip(rows + dy, 0, h2 - 1), np.clip(cols + dx, 0, w2 - 1))]
            ad = np.abs(cur - shifted)
            ad = np.pad(ad, ((0, hb * block - h2), (0, wb * block - w2)))  # zeros: partial blocks
            sad = ad.reshape(hb, block, wb, block).sum(axis=(1, 3))
            d2 = dx * dx + dy * dy
            better = (sad < best) | ((sad == best) & (d2 < best_d2))
            best = np.where(better, sad, best)
            best_d2 = np.where(better, d2, best_d2)
            bdx = np.where(better, dx, bdx)
            bdy = np.where(better, dy, bdy)
    return (-4 * bdx).astype(np.float64), (-4 * bdy).astype(np.float64)


# ----------------------------------------------------------------------------- the stage


@dataclass
class ReferenceTexture:
    """``levels[k][c]`` is the float64 plane of channel ``c`` at level ``k`` (stored ones only)."""

    width: int
    height: int
    levels: list[dict[int, np.ndarray]]
    motion_valid: bool
    state: dict = field(repr=False, default_factory=dict)

    def channel(self, c: int, level: int = 0) -> np.ndarray:
        return self.levels[level][int(c)]


def build_texture(frame, pixel_format: str | None = None, previous: ReferenceTexture | None = None,
                  fixation=(0.5, 0.5)) -> ReferenceTexture:
    """Reference texture array of ``frame``; pass the previous result as ``previous`` for motion."""
    rgb8 = frame_to_rgb8(frame, pixel_format)
    h, w = rgb8.shape[:2]
    sizes = level_sizes(w, h)
    r, g, b, lum, rg, by = point_channels(rgb8)
    y8 = luma8(rgb8)
    gx, gy, mag, hp = gradients(lum)
    motion_valid = previous is not None and (previous.width, previous.height) == (w, h)
    diff = np.abs(lum - previous.state["lum"]) if motion_valid else np.zeros_like(lum)

    L0 = {0: r, 1: g, 2: b, 3: lum, 4: local_contrast(y8), 5: eccentricity(w, h, fixation), 6: gx, 7: gy,
          8: mag, 9: hp, 10: _box5_sum(diff) / 25.0, 12: _box5_sum(mag) / 25.0, 14: local_entropy(y8),
          15: rg, 16: by}
    levels: list[dict[int, np.ndarray]] = [dict(L0)]

    pyr = [[lum], [rg], [by]]
    for k in range(1, NUM_LEVELS):
        for f in range(3):
            pyr[f].append(mip_down(pyr[f][k - 1]))
    for k in range(1, NUM_LEVELS):
        lev = {c: mip_down(levels[k - 1][c]) for c in _LEVEL0}
        if k == 1:
            lev[11] = saliency_level1(pyr)
        else:
            lev[11] = mip_down(levels[k - 1][11])
        levels.append(lev)

    ysum = luma_sums_level2(y8)
    w4, h4 = sizes[4]
    if motion_valid:
        mx, my = block_match(ysum, previous.state["ysum"])
    else:
        mx = my = np.zeros((h4, w4))
    levels[4][35], levels[4][36] = mx, my
    for c in _NOT_YET_COMPUTED:
        for k in range(channel_base_level(c), NUM_LEVELS):
            wk, hk = sizes[k]
            levels[k][c] = np.zeros((hk, wk))
    return ReferenceTexture(w, h, levels, motion_valid, {"lum": lum, "ysum": ysum})


# ----------------------------------------------------------------------------- stage 2: cascade

_COLOUR_SCALE, _COLOUR_OFFSET, _POS, _STAT = 1024, 2048, 16, 1 << 20
_TEXTURE_SCALE = 2048  # local contrast in 1/2048 units (cascade_math.h: texture_fixed)
# The (channel, level) planes the cascade reads: colour, saliency, eccentricity, motion and local
# contrast at level 2; saliency, motion and query similarity at level 4.
CASCADE_PLANES = ((3, 2), (15, 2), (16, 2), (11, 2), (5, 2), (10, 2), (4, 2), (11, 4), (10, 4), (33, 4))
MAX_SEEDS = 256  # kMaxSeeds: the most grid cells (clusters) a cascade has


def _clamp_or_zero(v, lo, hi, dtype=np.float32):
    """hd.h clamp_or_zero: how every stage reads a texel of a caller's texture (NaN as 0), in
    ``dtype`` (float32: as the kernels compute; float64 where the reference computes in float64)."""
    v = np.asarray(v, dtype)
    return np.where(np.isnan(v), dtype(0), np.clip(v, dtype(lo), dtype(hi)))


def _stat_fixed(v):
    return np.rint(np.asarray(v, np.float32) * np.float32(_STAT)).astype(np.int64)


_MAX_STAT_TEXEL, _MAX_PATCH_SCORE = 1.0e4, 2.0 ** 21  # kMaxStatTexel (hd.h), kMaxPatchScore
_COLOUR_MIN, _COLOUR_MAX = -2.0, 14.0  # kColourMin, kColourMax


def _stat_texel(v, dtype=np.float32):
    """A texel read as a statistic, as every stage reads it: clamped to +-1e4, NaN as 0."""
    return _clamp_or_zero(v, -_MAX_STAT_TEXEL, _MAX_STAT_TEXEL, dtype)


def seed_grid(seeds: int, w2: int, h2: int) -> tuple[int, int]:
    """Seed grid (gx, gy) with float32 arithmetic, as csrc/shared/cascade_math.h."""
    x = int(np.rint(np.sqrt(np.float32(seeds) * np.float32(w2) / np.float32(h2))))
    x = min(max(x, 1), w2, MAX_SEEDS)
    y = min(max(int(np.rint(np.float32(seeds) / np.float32(x))), 1), h2)
    if x * y > MAX_SEEDS:  # rounding: never more cells than the per-seed buffers hold
        y = MAX_SEEDS // x
    return x, y


@dataclass
class ReferenceCascade:
    labels: np.ndarray          # [h2, w2] cluster id per level-2 texel
    cluster_scores: np.ndarray  # [gx*gy] float32, -1 for empty clusters
    cluster_contrast: np.ndarray  # [gx*gy] float32 contrast (colour or texture rarity) in [0, 1]
    patch_contrast: np.ndarray  # [h4, w4] float32 contrast of each patch's cluster
    kept_clusters: np.ndarray   # [top_clusters], -1 padding
    candidates: np.ndarray      # [top_clusters, patches_per_cluster], -1 padding
    grid: tuple


def cluster_cascade(planes: dict, num_seeds=48, iterations=3, compactness=0.1, top_clusters=10,
                    patches_per_cluster=50, motion_weight=1.0, query_weight=1.0,
                    contrast_weight=1.0) -> ReferenceCascade:
    """Stage 2 on texture planes: ``planes[(channel, level)]`` as float32 arrays for the
    ``CASCADE_PLANES`` (take them from a backend's texture, so both see the same input). Integer
    SLIC, exact sums, unique patch keys: backends must match this bit for bit."""
    L2 = [planes[(c, 2)] for c in (3, 15, 16)]
    h2, w2 = L2[0].shape
    h4, w4 = planes[(11, 4)].shape
    colour = np.stack([np.rint(_clamp_or_zero(p, _COLOUR_MIN, _COLOUR_MAX) * np.float32(_COLOUR_SCALE)).astype(np.int64)
                       + _COLOUR_OFFSET for p in L2])  # [3, h2, w2]
    gx, gy = seed_grid(num_seeds, w2, h2)
    n = gx * gy
    s16_sq = int(round(256.0 * w2 * h2 / (gx * gy)))
    m_sq = int(round((float(np.float32(compactness)) * _COLOUR_SCALE) ** 2))
    ii, jj = np.mgrid[0:h2, 0:w2]
    cx, cy = jj * gx // w2, ii * gy // h2
    x16, y16 = jj * _POS + _POS // 2, ii * _POS + _POS // 2

    a, b = np.divmod(np.arange(n), gx)
    sx = ((2 * b + 1) * w2 * _POS) // (2 * gx)
    sy = ((2 * a + 1) * h2 * _POS) // (2 * gy)
    sc = colour[:, sy // _POS, sx // _POS].copy()  # [3, n]

    def assign():
        best = np.full((h2, w2), -1, np.int64)
        best_d = np.zeros((h2, w2), np.int64)
        for da in (-1, 0, 1):
            for db in (-1, 0, 1):
                ca, cb = cy + da, cx + db
                ok = (ca >= 0) & (ca < gy) & (cb >= 0) & (cb < gx)
                k = np.where(ok, ca * gx + cb, 0)
                dc = colour - sc[:, k]
                dp = (x16 - sx[k]) ** 2 + (y16 - sy[k]) ** 2
                d = s16_sq * (dc ** 2).sum(axis=0) + m_sq * dp
                better = ok & ((best < 0) | (d < best_d))  # candidates come in increasing k: ties keep the lower
                best = np.where(better, k, best)
                best_d = np.where(better, d, best_d)
        return best

    for _ in range(iterations):
        labels = assign()
        flat = labels.ravel()
        count = np.bincount(flat, minlength=n).astype(np.int64)
        nz = count > 0

        def mean(values):
            s = np.zeros(n, np.int64)
            np.add.at(s, flat, values.ravel())
            return (s + count // 2) // np.maximum(count, 1)

        for c in range(3):
            sc[c] = np.where(nz, mean(colour[c]), sc[c])
        sx = np.where(nz, mean(x16), sx)
        sy = np.where(nz, mean(y16), sy)
    labels = assign()

    flat = labels.ravel()
    count = np.bincount(flat, minlength=n).astype(np.int64)
    q_at_texel = planes[(33, 4)][np.minimum(ii >> 2, h4 - 1), np.minimum(jj >> 2, w4 - 1)]
    sums = []
    for v in (planes[(11, 2)], planes[(5, 2)], planes[(10, 2)], q_at_texel):
        s = np.zeros(n, np.int64)
        np.add.at(s, flat, _stat_fixed(_stat_texel(v)).ravel())
        sums.append(s)
    f32 = np.float32
    nonempty = np.nonzero(count)[0]
    # Colour and texture rarity: sum over the other clusters of count x L1 distance of the
    # (rounded) mean colours, and of the (rounded) mean local contrasts; exact integers. Each is
    # placed between the frame's least and most rare cluster; contrast is the larger of the two.
    # local contrast clamped to its range [0, 0.5] (NaN to 0), as texture_fixed does
    local = _clamp_or_zero(planes[(4, 2)], 0.0, 0.5)
    texture = np.rint(local * np.float32(_TEXTURE_SCALE)).astype(np.int64)
    means = np.stack([(_exact_sums(flat, f.ravel(), n) + count // 2) // np.maximum(count, 1)
                      for f in (*colour, texture)])  # [4, n]
    contrast = np.zeros(n, np.float32)
    for rows in (slice(0, 3), slice(3, 4)):
        rarity = np.zeros(n, np.int64)
        for k in nonempty:
            d = np.abs(means[rows][:, nonempty] - means[rows][:, k:k + 1]).sum(axis=0)
            rarity[k] = int((count[nonempty] * d).sum())
        lo, hi = (int(rarity[nonempty].min()), int(rarity[nonempty].max())) if len(nonempty) else (0, 0)
        if hi > lo:
            contrast[nonempty] = np.maximum(contrast[nonempty],
                                            [f32((int(rarity[k]) - lo) / (hi - lo)) for k in nonempty])
    saliency = np.full(n, -1.0, np.float32)
    for k in nonempty:
        denom = float(count[k]) * _STAT
        sal, ecc = (f32(float(s[k]) / denom) for s in sums[:2])
        saliency[k] = f32(sal * f32(f32(1.0) + (-(f32(0.5) * ecc))))
    max_saliency = f32(max(0.0, float(saliency[nonempty].max()))) if len(nonempty) else f32(0)
    scores = np.full(n, -1.0, np.float32)
    for k in nonempty:
        denom = float(count[k]) * _STAT
        mot, qry = (f32(float(s[k]) / denom) for s in sums[2:])
        c2 = f32(contrast[k] * contrast[k])
        s_k = f32(saliency[k] + f32(f32(f32(contrast_weight) * c2) * max_saliency))
        scores[k] = f32(f32(s_k + f32(f32(motion_weight) * mot)) + f32(f32(query_weight) * qry))
    order = sorted(np.nonzero(count)[0], key=lambda k: (-scores[k], k))
    kept = np.full(top_clusters, -1, np.int64)
    kept[: min(top_clusters, len(order))] = order[:top_clusters]

    bi, bj = np.mgrid[0:h4, 0:w4]
    patch_cluster = labels[np.minimum(4 * bi + 2, h2 - 1), np.minimum(4 * bj + 2, w2 - 1)].ravel()
    patch_contrast = contrast[patch_cluster].reshape(h4, w4)
    s = (_stat_texel(planes[(11, 4)]) + f32(motion_weight) * _stat_texel(planes[(10, 4)])) \
        + f32(query_weight) * _stat_texel(planes[(33, 4)])
    keys = (_stat_fixed(_clamp_or_zero(s, 0.0, _MAX_PATCH_SCORE)).ravel().astype(np.uint64) << np.uint64(22)) \
        | (np.uint64(0x3FFFFF) - np.arange(h4 * w4, dtype=np.uint64))
    cand = np.full((top_clusters, patches_per_cluster), -1, np.int64)
    for r, k in enumerate(kept):
        if k < 0:
            break
        members = np.nonzero(patch_cluster == k)[0]
        take = members[np.argsort(keys[members])[::-1]][:patches_per_cluster]  # keys are unique
        cand[r, : len(take)] = take
    return ReferenceCascade(labels.astype(np.int32), scores, contrast, patch_contrast, kept.astype(np.int32),
                            cand.astype(np.int32), (gx, gy))


def _exact_sums(labels: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-label sums of int64 values, exactly (np.bincount would go through float64)."""
    s = np.zeros(n, np.int64)
    np.add.at(s, labels, np.asarray(values, np.int64))
    return s


# ----------------------------------------------------------------------------- stages 3-5: scores, balance, temporal, allocation

LODS = (64, 128, 256, 384, 400)
REUSE_CHANGE = np.float32(1) / np.float32(255)  # allocate_params.h: kReuseChange
LOD_LEVEL = {400: 0, 384: 0, 256: 1, 128: 2, 64: 3}  # seed 004: >= 300 -> 0, >= 200 -> 1, >= 100 -> 2
PATCH = 16


def robust_normalize(x: np.ndarray) -> np.ndarray:
    """(x - p10) / (p90 - p10) clamped to [0, 1], where pq is the sorted value at index
    floor(q * (n - 1)) (q = 1/10, 9/10); 0.5 everywhere when p90 == p10."""
    return _between_ranks(x, lambda n: (9 * (n - 1)) // 10)


def query_normalize(x: np.ndarray) -> np.ndarray:
    """(x - p10) / (max - p10) clamped to [0, 1] (p10 as in robust_normalize); 0.5 everywhere when
    max == p10. The query score's upper bound is the best match, not p90: an object smaller than a
    tenth of the candidates would otherwise tie with the background's best look-alikes at 1."""
    return _between_ranks(x, lambda n: n - 1)


def _between_ranks(x: np.ndarray, high_rank) -> np.ndarray:
    """x placed between its sorted values at ranks (n - 1) // 10 and high_rank(n) (the kernels'
    component_low_rank / component_high_rank), clamped to [0, 1]; 0.5 everywhere when they are equal."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if n == 0:
        return x
    s = np.sort(x)
    lo, hi = s[(n - 1) // 10], s[high_rank(n)]
    if hi <= lo:
        return np.full(n, 0.5)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def text_likeness(high_pass, entropy) -> np.ndarray:
    """high_pass * (1 - entropy)^2 of level-4 planes (channels 9, 14), in float32 operations as the
    backends (a patch exactly at the threshold must fall on the same side)."""
    flat = np.float32(1.0) - np.asarray(entropy, np.float32)
    return (np.asarray(high_pass, np.float32) * flat) * flat


def budget_kappa(steepness: float) -> float:
    """The budget curve's exponent (saccade_budget): 4 sigmoid(steepness) + 0.5."""
    return 4.0 / (1.0 + np.exp(-steepness)) + 0.5


def key_for_budget(budget: float, steepness: float, offset: float) -> float:
    """The smallest key whose saccade_budget reaches ``budget`` (1 when unreachable)."""
    v = (budget - 64.0) / 336.0 - offset
    return 0.0 if v <= 0 else 1.0 if v >= 1 else float(v ** (1.0 / budget_kappa(steepness)))


def sobel_key(edge: np.ndarray) -> np.ndarray:
    """(x - min) / (max - min) of the candidates' level-4 Sobel magnitudes (channel 8); 0.5 when equal."""
    edge = np.asarray(edge, np.float64)
    if len(edge) == 0 or edge.max() <= edge.min():
        return np.full(len(edge), 0.5)
    return (edge - edge.min()) / (edge.max() - edge.min())


def three_scores(level4: dict, patches: np.ndarray, has_query: bool, patch_contrast=None):
    """Information, salience and query relevance of candidate patches, each in [0, 1].
    ``level4[c]`` is the level-4 plane of channel c (flattened by patch id); ``patch_contrast``
    the cascade's contrast of each patch's cluster (same layout; None: 0)."""
    g = {c: _stat_texel(level4[c], np.float64).ravel()[patches] for c in (5, 9, 10, 11, 12, 14, 33)}
    relative_motion = _relative_motion(level4[35], level4[36]).ravel()[patches]
    info = (robust_normalize(g[14]) + robust_normalize(g[12]) + robust_normalize(g[9])) / 3.0
    # Busy texture everywhere leaves the choice to salience and query (see repetition_gain).
    info = info * repetition_gain(np.asarray(info, np.float32).astype(np.float64)) if len(patches) else info
    contrast = (np.zeros(len(patches)) if patch_contrast is None
                else _clamp_or_zero(patch_contrast, 0.0, 1.0, np.float64).ravel()[patches])
    # motion against the background's on a fixed scale (0.5 moving with it, 1 a patch or more against it)
    sal = (np.maximum(robust_normalize(g[11]), contrast) + (1.0 - g[5]) + np.minimum(1.0, 0.5 + 0.5 * relative_motion)) / 3.0
    query = query_normalize(g[33]) if has_query else np.full(len(patches), 0.5)
    return info, sal, query


def mean_motion(mvx: np.ndarray, mvy: np.ndarray) -> tuple:
    """The frame's mean motion vector: whole pixels averaged (as the backends' exact integer sums)."""
    n = np.size(mvx)
    return tuple(float(np.float32(float(int(np.rint(_stat_texel(m)).astype(np.int64).sum())) / n))
                 for m in (mvx, mvy))


def _relative_motion(mvx, mvy) -> np.ndarray:
    """|motion vector - the frame's mean| in patches: motion against the background's."""
    gx, gy = mean_motion(mvx, mvy)
    return np.hypot(_stat_texel(mvx, np.float64) - gx, _stat_texel(mvy, np.float64) - gy) / PATCH


GESTALT_CHANNELS = tuple(range(17, 33)) + (0, 1, 2, 3)  # the context network's gestalt (level 4)
CONTEXT_KEYS = ("ctx_W1", "ctx_b1", "ctx_W2", "ctx_b2")
QUERY_EMBEDDING_DIMS = 16


def context_on(weights: dict) -> bool:
    """The context network runs unless its parameters are all zero (the default)."""
    return any(np.any(np.asarray(weights[k]) != 0) for k in CONTEXT_KEYS)


def context_inputs(level4: dict, query_embedding, has_query: bool, info, sal, query) -> np.ndarray:
    """The context network's 40 inputs: the query embedding (16; zeros without one), 1 with a
    query, the frame's means of level-4 channels 17..32 and 0..3 (as the backends: each value in
    2^-20 units, rounded, summed exactly), the candidates' mean information (with its repetition
    gain), salience and query scores."""
    e = np.zeros(QUERY_EMBEDDING_DIMS) if query_embedding is None else np.asarray(query_embedding, np.float64).ravel()
    g = []
    for c in GESTALT_CHANNELS:
        v = _stat_texel(level4[c]).ravel()
        g.append(float(np.rint(v * np.float32(1048576.0)).astype(np.int64).sum()) / 1048576.0 / v.size)
    m = [float(np.mean(s)) if len(s) else 0.0 for s in (info, sal, query)]
    return np.concatenate([e, [1.0 if has_query else 0.0], g, m])


def context_weights(weights: dict, x) -> np.ndarray:
    """softmax(ctx_W2 ReLU(ctx_W1 x + ctx_b1) + ctx_b2): the weights of the three scores."""
    w = {k: np.asarray(weights[k], np.float64) for k in CONTEXT_KEYS}
    h = np.maximum(w["ctx_W1"] @ np.asarray(x, np.float64) + w["ctx_b1"], 0.0)
    z = w["ctx_W2"] @ h + w["ctx_b2"]
    e = np.exp(z - z.max())
    return e / e.sum()


def mlp_raw(weights: dict, info, sal, query) -> np.ndarray:
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    x = np.stack([info, sal, query], axis=-1)
    h = x @ w["W1"].T + w["b1"]
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    h = np.maximum((h - mu) / np.sqrt(var + 1e-5) * w["ln_gamma"] + w["ln_beta"], 0.0)
    h = h @ w["W2"].T + w["b2"]
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    h = np.maximum((h - mu) / np.sqrt(var + 1e-5) * w["ln2_gamma"] + w["ln2_beta"], 0.0)
    return 1.0 / (1.0 + np.exp(-(h @ w["W3"].T + w["b3"])[:, 0]))


def spatial_diversity(raw: np.ndarray, px: np.ndarray, py: np.ndarray, best=None) -> np.ndarray:
    """Distance (patch units) of each candidate to the nearest of the K best by raw
    (K = max(1, min(50, n // 5)), ties to the lower index), divided by the largest such distance.
    ``best``: other anchors (candidate indices) in their place."""
    n = len(raw)
    k = max(1, min(50, n // 5))
    if best is None:
        best = sorted(range(n), key=lambda i: (-raw[i], i))[:k]
    d = np.sqrt((px[:, None] - px[best][None, :]) ** 2 + (py[:, None] - py[best][None, :]) ** 2).min(axis=1)
    m = d.max() if n else 0.0
    return d / m if m > 0 else np.zeros(n)


def hash_unit(seed: int, frame: int, patch) -> np.ndarray:
    """Deterministic uniform [0, 1) per patch for the 'random' strategy (32-bit integer hash)."""
    x = (np.asarray(patch, np.uint64) * np.uint64(0x9E3779B1) + np.uint64(seed) * np.uint64(0x85EBCA77)
         + np.uint64(frame) * np.uint64(0xC2B2AE3D)) & np.uint64(0xFFFFFFFF)
    for shift, mul in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        x ^= x >> np.uint64(shift)
        x = (x * np.uint64(mul)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    return (x >> np.uint64(8)).astype(np.float64) / float(1 << 24)


def saccade_budget(s, steepness: float, offset: float) -> np.ndarray:
    return 64.0 + 336.0 * np.clip(np.power(np.clip(s, 0.0, 1.0), budget_kappa(steepness)) + offset, 0.0, 1.0)


_NEXT_LOD = {64: 128, 128: 256, 256: 384, 384: 400, 400: np.inf}


def quantize_lod_held(b, held, band: float) -> np.ndarray:
    """quantize_lod, except that a saccade whose content held level ``held`` (0: none) in the
    previous frame keeps it while b stays within ``band`` of its interval [held, next level)."""
    b = np.asarray(b, np.float64)
    q = quantize_lod(b)
    held = np.asarray(held, np.int64)
    out = q.copy()
    for k in range(b.size):
        h = int(held.flat[k])
        if h > 0 and q.flat[k] != h and h - band <= b.flat[k] < _NEXT_LOD[h] + band:
            out.flat[k] = h
    return out


def quantize_lod(b) -> np.ndarray:
    """Largest level of detail in {64, 128, 256, 384, 400} not above b (b >= 64)."""
    b = np.asarray(b, np.float64)
    out = np.full(b.shape, 64, np.int64)
    for lod in LODS[1:]:
        out = np.where(b >= lod, lod, out)
    return out


@dataclass
class ReferenceAllocation:
    """One frame of stages 3-5 (float64). Token arrays have G + S entries: gestalt first."""

    info: np.ndarray          # per candidate
    salience: np.ndarray
    query: np.ndarray
    raw: np.ndarray
    diversity: np.ndarray
    balanced: np.ndarray
    relevance: np.ndarray     # per candidate, after temporal blending
    key: np.ndarray           # per candidate, the strategy's selection key
    selected: np.ndarray      # candidate indices of the saccades, best first
    budget_raw: np.ndarray    # per selected saccade, before quantization (after scaling)
    positions: np.ndarray     # [G+S, 2] token centres (x, y) in pixels; -1 for padding
    levels: np.ndarray        # [G+S] mip level; -1 for padding
    budgets: np.ndarray       # [G+S] level of detail; 0 for padding
    kinds: np.ndarray         # [G+S] 0 gestalt, 1 saccade, -1 padding
    scores: np.ndarray        # [G+S]
    token_patch: np.ndarray   # [G+S] patch id of each token (-1 for padding)
    relevance_map: np.ndarray  # [h4, w4] relevance carried to the next frame (channel 39)
    cached: np.ndarray        # [h4, w4] previous relevance warped by motion (channel 34)
    scene_cut: bool
    previous: np.ndarray = None    # [G+S] token of the previous frame whose content this token shows, -1
    reuse: np.ndarray = None       # [G+S] previous where the level of detail is unchanged, else -1
    drift: np.ndarray = None       # [G+S] float32 change along each reused token's chain (0: a new chain)
    token_map: np.ndarray = None   # [h4, w4] this frame's saccade token per patch (-1): next frame's history
    budget_map: np.ndarray = None  # [h4, w4] their levels of detail (0)
    drift_map: np.ndarray = None   # [h4, w4] float32 their reuse-chain drift (0): next frame's history
    context_weights: np.ndarray = None  # [3] the context network's weights of the three scores
    candidates: np.ndarray = None  # [n] patch id of each candidate (the arrays "per candidate" above)
    rank_key: np.ndarray = None    # [n] what saccades are chosen by: the key, text floor and hysteresis


def gestalt_tokens(width: int, height: int, grid=(16, 16)):
    """Centres (x, y) of the uniform gestalt grid, row-major."""
    gx, gy = grid
    xs = (np.arange(gx) + 0.5) * width / gx
    ys = (np.arange(gy) + 0.5) * height / gy
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)


def patch_centre(patch, w4: int, width: int, height: int):
    """Centre (x, y) of the existing part of a patch (edge patches are partial)."""
    bi, bj = np.divmod(np.asarray(patch), w4)
    x0, y0 = PATCH * bj, PATCH * bi
    return (x0 + np.minimum(x0 + PATCH, width)) / 2.0, (y0 + np.minimum(y0 + PATCH, height)) / 2.0


def scene_cut(motion_level0: np.ndarray, motion_valid: bool, threshold=0.2, share=0.25, correlation=None,
              cut_correlation=0.5) -> bool:
    """More than ``share`` of the pixels move by more than ``threshold``, and (with a previous frame)
    the structure ``correlation`` (``structure_correlation``) is below ``cut_correlation``."""
    moving = motion_valid and np.count_nonzero(np.asarray(motion_level0) > threshold) > share * motion_level0.size
    return bool(moving and (correlation is None or correlation < cut_correlation))


def structure_correlation(lum4: np.ndarray, previous_lum4: np.ndarray, mvx: np.ndarray, mvy: np.ndarray) -> float:
    """Pearson correlation of the level-4 luminance with the previous frame's moved by the frame's
    mean motion vector (whole pixels averaged; one shift for the whole frame), from exact integer
    sums of the values in 2^-20 units, as the backends compute it; 1 when either frame is flat."""
    n = int(np.size(lum4))
    shift = mean_motion(mvx, mvy)
    # luminance clamped to [-2, 2] (NaN to 0): allocate_params.h structure_terms
    x = np.rint(_clamp_or_zero(lum4, -2.0, 2.0).astype(np.float64) * 2.0 ** 20).astype(np.int64).ravel()
    prev = warp_relevance(_clamp_or_zero(previous_lum4, -2.0, 2.0).astype(np.float64),
                          np.full(np.shape(lum4), float(shift[0])), np.full(np.shape(lum4), float(shift[1])))
    y = np.rint(prev * 2.0 ** 20).astype(np.int64).ravel()
    s = 2.0 ** -20
    sx, sy = float(x.sum()) * s, float(y.sum()) * s
    sxx, syy, sxy = (float(int(v)) * s * s for v in ((x * x).sum(), (y * y).sum(), (x * y).sum()))
    vx, vy = n * sxx - sx * sx, n * syy - sy * sy
    if not (vx > 1e-12 * n * n) or not (vy > 1e-12 * n * n):
        return 1.0
    return float((n * sxy - sx * sy) / np.sqrt(vx * vy))


def warp_relevance(prev: np.ndarray, mvx: np.ndarray, mvy: np.ndarray) -> np.ndarray:
    """A per-patch map of the previous frame (relevance, held saccade tokens and levels) moved along
    the motion vectors (nearest patch, edge-clamped)."""
    h4, w4 = prev.shape
    bi, bj = np.mgrid[0:h4, 0:w4]
    mvx, mvy = (_clamp_or_zero(m, -2.0 ** 20, 2.0 ** 20, np.float64) for m in (mvx, mvy))  # warp_source
    si = np.clip(np.floor(bi - mvy / PATCH + 0.5).astype(np.int64), 0, h4 - 1)
    sj = np.clip(np.floor(bj - mvx / PATCH + 0.5).astype(np.int64), 0, w4 - 1)
    return prev[si, sj]


def glimpse_change(change: np.ndarray, x: float, y: float, level: int, glimpse_size: int) -> np.float32:
    """The largest frame difference ``change`` ([h4, w4], channel 10 at level 4, read as a
    statistic) on the patches a glimpse at (x, y) and ``level`` samples: its centre +-
    (glimpse_size / 2 + 1) texels of its level (float32, as allocate_params.h)."""
    h4, w4 = change.shape
    f = np.float32
    r = (f(0.5) * f(glimpse_size) + f(1)) * f(1 << level)
    j0, j1 = (int(np.clip(np.floor((f(x) + d) / f(16)), 0, w4 - 1)) for d in (-r, r))
    i0, i1 = (int(np.clip(np.floor((f(y) + d) / f(16)), 0, h4 - 1)) for d in (-r, r))
    return max(f(0), f(np.max(change[i0:i1 + 1, j0:j1 + 1])))


def allocate_tokens(level4: dict, motion_level0: np.ndarray, motion_valid: bool, candidates, width: int,
                    height: int, weights: dict, previous_relevance=None, has_query=False, frame_index=0,
                    gestalt_grid=(16, 16), saccades=273, total_budget=100_000, gestalt_lod=64, steepness=2.0,
                    offset=0.0, strategy="balanced", seed=0, decay=0.8, motion_boost=0.8, motion_threshold=0.2,
                    gestalt_overlap=True, cut_motion=0.2, cut_share=0.25, previous_tokens=None,
                    previous_budgets=None, previous_drift=None, previous_gestalt_drift=None, hysteresis=0.15, lod_band=24.0, max_candidates=1024,
                    patch_contrast=None, previous_lum=None, cut_correlation=0.5, text_floor=256,
                    text_threshold=0.02, query_embedding=None, glimpse_size=16,
                    previous_size=None) -> ReferenceAllocation:
    """Stages 3-5 of one frame on the texture's level-4 planes (``level4[c]`` for c in 5, 9, 10,
    11, 12, 14, 33, 35, 36; 8 too for the 'sobel' strategy) and the cascade's candidates (patch ids, -1 padding ignored).
    ``previous_tokens`` / ``previous_budgets``: the previous frame's ``token_map`` / ``budget_map``
    (held saccades), given together with ``previous_relevance``; ``previous_drift`` /
    ``previous_gestalt_drift``: its ``drift_map`` and the gestalt tokens' ``drift`` (reuse chains;
    zeros when not given). Candidates are the cascade's, then
    the held patches it did not propose (patch order), up to ``max_candidates``. ``patch_contrast``:
    the cascade's contrast per patch ([h4, w4]; ``cluster_cascade(...).patch_contrast``).
    ``previous_lum``: the previous frame's level-4 luminance (channel 3), with the history.
    ``previous_size``: the previous frame's (width, height) (None: this frame's); reuse (cached
    keys/values) needs the same size and a valid frame difference (``motion_valid``)."""
    h4, w4 = np.asarray(level4[11]).shape
    mvx = np.asarray(level4[35], np.float64)
    mvy = np.asarray(level4[36], np.float64)
    history = previous_relevance is not None and np.asarray(previous_relevance).shape == (h4, w4)
    correlation = (structure_correlation(level4[3], previous_lum, mvx, mvy)
                   if history and previous_lum is not None else None)
    cut = scene_cut(motion_level0, motion_valid, cut_motion, cut_share, correlation, cut_correlation)
    has_prev = previous_relevance is not None and np.asarray(previous_relevance).shape == (h4, w4) and not cut
    # Saccades stay on their content (followed along the motion vectors) unless beaten by a margin.
    if has_prev and previous_tokens is not None:
        held_token = warp_relevance(np.asarray(previous_tokens, np.int64), mvx, mvy).ravel()
        held_budget = np.where(held_token >= 0, warp_relevance(np.asarray(previous_budgets, np.int64), mvx, mvy).ravel(), 0)
        prev_drift = np.zeros((h4, w4), np.float32) if previous_drift is None else np.asarray(previous_drift, np.float32)
        held_drift = np.where(held_token >= 0, warp_relevance(prev_drift, mvx, mvy).ravel(), np.float32(0))
    else:
        held_token, held_budget = np.full(h4 * w4, -1, np.int64), np.zeros(h4 * w4, np.int64)
        held_drift = np.zeros(h4 * w4, np.float32)
    # the cascade's slots in order, padding, patches outside the grid and repeats skipped (a caller's
    # CascadeView may hold anything: compact_candidates)
    cand = list(dict.fromkeys(int(c) for c in np.asarray(candidates).ravel() if 0 <= c < h4 * w4))
    # text guardrail: patches that look like text (float32 as the backends, so the threshold agrees)
    text = (text_likeness(_stat_texel(level4[9]), _stat_texel(level4[14])).ravel() >= np.float32(text_threshold) if text_floor > 0
            else np.zeros(h4 * w4, bool))
    if strategy != "random":
        proposed = set(cand)
        for extra in (np.flatnonzero(held_token >= 0), np.flatnonzero(text)):
            for q in extra:
                if len(cand) >= max_candidates:
                    break
                if int(q) not in proposed:
                    cand.append(int(q))
                    proposed.add(int(q))
    cand = np.asarray(cand, np.int64)
    guarded = text[cand] & (strategy != "random")
    n = len(cand)
    info, sal, query = three_scores(level4, cand, has_query, patch_contrast)
    context = np.full(3, 1.0 / 3.0)
    if strategy == "balanced" and context_on(weights):
        context = context_weights(weights, context_inputs(level4, query_embedding, has_query, info, sal, query))
        info, sal, query = 3 * context[0] * info, 3 * context[1] * sal, 3 * context[2] * query
    raw = mlp_raw(weights, info, sal, query) if n else np.zeros(0)
    py, px = np.divmod(cand, w4)
    div = spatial_diversity(raw, px.astype(np.float64), py.astype(np.float64)) if n else np.zeros(0)
    lam = 1.0 / (1.0 + np.exp(-np.asarray(weights["lambda_logits"], np.float64)))
    mix = np.asarray(weights["mix"], np.float64)
    t1 = lam[0] * info + (1 - lam[0]) * query
    t2 = lam[1] * sal + (1 - lam[1]) * (1 - sal)
    t3 = raw + (1 - lam[2]) * 0.3 * div
    b = mix[0] * t1 + mix[1] * t2 + mix[2] * t3
    balanced = (b - b.min()) / (b.max() - b.min()) if n and b.max() > b.min() else np.full(n, 0.5)

    cached = warp_relevance(np.asarray(previous_relevance, np.float64), mvx, mvy) if has_prev else np.zeros((h4, w4))
    rel = decay * cached.ravel()[cand] + (1 - decay) * balanced if has_prev else balanced.copy()
    if not cut:
        rel = rel + np.where(np.asarray(level4[10], np.float64).ravel()[cand] > motion_threshold, motion_boost, 0.0)
    rel = np.clip(rel, 0.0, 1.0)

    if strategy == "sobel":  # seed 000's saliency: the patch's mean Sobel magnitude, min-max over the candidates
        key = sobel_key(_stat_texel(level4[8], np.float64).ravel()[cand])
    else:
        key = {"balanced": rel, "saliency": sal, "query": query,
               "random": hash_unit(seed, frame_index, cand) if n else np.zeros(0)}[strategy]
    held = held_token[cand] >= 0 if strategy != "random" else np.zeros(n, bool)
    rank_key = np.where(guarded, np.maximum(key, key_for_budget(text_floor, steepness, offset)), key)
    rank_key = np.asarray(rank_key, np.float64) + np.where(held, hysteresis, 0.0)
    gest = gestalt_tokens(width, height, gestalt_grid)
    G = len(gest)
    gest_patch = (np.minimum(gest[:, 1] // PATCH, h4 - 1) * w4 + np.minimum(gest[:, 0] // PATCH, w4 - 1)).astype(np.int64)
    eligible = [i for i in range(n) if gestalt_overlap or cand[i] not in set(gest_patch.tolist())]
    order = sorted(eligible, key=lambda i: (-rank_key[i], i))[:saccades]
    budget = saccade_budget(key[order], steepness, offset) if order else np.zeros(0)
    floor = np.where(guarded[order], float(text_floor), 0.0) if order else np.zeros(0)
    budget = np.maximum(budget, floor)
    room = total_budget - G * gestalt_lod
    if budget.sum() > room:
        budget = np.maximum(np.maximum(64.0, budget * (room / budget.sum())), floor)
    lod = quantize_lod_held(budget, held_budget[cand[order]] if order else np.zeros(0), lod_band)
    keep = len(order)
    while keep and lod[:keep].sum() > room:
        keep -= 1  # drop the lowest-scoring saccade
    order, budget, lod = order[:keep], budget[:keep], lod[:keep]

    N = G + saccades
    positions = np.full((N, 2), -1.0)
    levels = np.full(N, -1, np.int64)
    budgets = np.zeros(N, np.int64)
    kinds = np.full(N, -1, np.int64)
    scores = np.zeros(N)
    token_patch = np.full(N, -1, np.int64)
    positions[:G] = gest
    levels[:G] = LOD_LEVEL[gestalt_lod]
    budgets[:G] = gestalt_lod
    kinds[:G] = 0
    token_patch[:G] = gest_patch
    scores[:G] = 0.0
    if keep:
        cx, cy = patch_centre(cand[order], w4, width, height)
        positions[G:G + keep, 0], positions[G:G + keep, 1] = cx, cy
        levels[G:G + keep] = [LOD_LEVEL[int(v)] for v in lod]
        budgets[G:G + keep] = lod
        kinds[G:G + keep] = 1
        scores[G:G + keep] = rank_key[order]
        token_patch[G:G + keep] = cand[order]

    previous = np.full(N, -1, np.int64)
    reuse = np.full(N, -1, np.int64)
    drift = np.zeros(N, np.float32)  # before this frame's change: the chain's so far
    reuse_valid = has_prev and motion_valid and (previous_size is None or tuple(previous_size) == (width, height))
    # a saccade is reused only where it stayed on its patch (the pixel check compares the same place)
    stayed = (warp_relevance(np.arange(h4 * w4, dtype=np.int64).reshape(h4, w4), mvx, mvy).ravel()
              == np.arange(h4 * w4))
    if has_prev:  # gestalt cells that nothing moved under show the same content
        still = (mvx.ravel()[gest_patch] == 0) & (mvy.ravel()[gest_patch] == 0)
        previous[:G] = np.where(still, np.arange(G), -1)
        reuse[:G] = previous[:G] if reuse_valid else -1
        if previous_gestalt_drift is not None:
            drift[:G] = np.where(still, np.asarray(previous_gestalt_drift, np.float32), np.float32(0))
    token_map = np.full(h4 * w4, -1, np.int64)
    budget_map = np.zeros(h4 * w4, np.int64)
    for s in range(keep):
        q, t = int(cand[order[s]]), G + s
        previous[t] = held_token[q]
        reuse[t] = previous[t] if previous[t] >= 0 and reuse_valid and stayed[q] and held_budget[q] == lod[s] else -1
        drift[t] = held_drift[q]
        token_map[q], budget_map[q] = t, lod[s]
    # Reuse (cached keys/values) also needs the pixels unchanged: the frame difference under the
    # token's glimpse, summed along its reuse chain, at most one grey level (motion vectors read 0
    # under slow pans; a slow fade passes every link).
    change = _stat_texel(level4[10])
    for t in np.flatnonzero(reuse >= 0):
        drift[t] = np.float32(drift[t] + glimpse_change(change, positions[t, 0], positions[t, 1], int(levels[t]),
                                                        glimpse_size))
        if not drift[t] <= REUSE_CHANGE:
            reuse[t] = -1
    drift[reuse < 0] = 0
    drift_map = np.zeros(h4 * w4, np.float32)
    drift_map[token_patch[G:G + keep]] = drift[G:G + keep]

    new_rel = decay * cached if has_prev else np.zeros((h4, w4))
    new_rel = new_rel.ravel()
    new_rel[cand] = rel
    return ReferenceAllocation(info, sal, query, raw, div, balanced, rel, key, np.asarray(order, np.int64), budget,
                               positions, levels, budgets, kinds, scores, token_patch, new_rel.reshape(h4, w4),
                               cached, cut, previous, reuse, drift, token_map.reshape(h4, w4),
                               budget_map.reshape(h4, w4), drift_map.reshape(h4, w4), context, cand,
                               np.asarray(rank_key, np.float64))


# ----------------------------------------------------------------------------- stage 6: gather


def glimpses(rgb_levels, positions, levels, size: int = 16) -> np.ndarray:
    """[N, 3, P, P] bilinear samples of R, G, B at each token's level, covering P * 2^level pixels
    around its centre; ``rgb_levels[k]`` is the [3, h_k, w_k] colour of level k. Padding -> 0."""
    out = np.zeros((len(levels), 3, size, size))
    offs = np.arange(size) + 0.5 - size / 2.0
    for t, (pos, lev) in enumerate(zip(positions, levels)):
        if lev < 0:
            continue
        scale = float(1 << int(lev))
        xs = (pos[0] + offs * scale) / scale - 0.5
        ys = (pos[1] + offs * scale) / scale - 0.5
        for c in range(3):
            out[t, c] = sample_bilinear(np.asarray(rgb_levels[lev][c], np.float64), xs, ys)
    return out


def gather_features(features: np.ndarray, positions, levels, width: int, height: int) -> np.ndarray:
    """[N, C]: each token's feature from a dense [C, h, w] map over the frame, averaged over the
    2^level x 2^level cells around the token's cell (clamped to the map). Padding -> 0."""
    f = np.asarray(features, np.float64)
    C, h, w = f.shape
    out = np.zeros((len(levels), C))
    for t, (pos, lev) in enumerate(zip(positions, levels)):
        if lev < 0:
            continue
        n = 1 << int(lev)
        ci = min(int(pos[1] * h / height), h - 1)
        cj = min(int(pos[0] * w / width), w - 1)
        i0 = min(max(ci - n // 2, 0), max(h - n, 0))
        j0 = min(max(cj - n // 2, 0), max(w - n, 0))
        out[t] = f[:, i0:i0 + n, j0:j0 + n].mean(axis=(1, 2))
    return out


def homunculus(token_patch, budgets, h4: int, w4: int) -> np.ndarray:
    """Budget (levels of detail) per patch: the sum over the tokens in each patch."""
    m = np.zeros(h4 * w4)
    for p, b in zip(token_patch, budgets):
        if p >= 0:
            m[p] += b
    return m.reshape(h4, w4)


# ----------------------------------------------------------------------------- semantics


def patch_descriptors(level1: dict) -> np.ndarray:
    """[32, h4, w4] built-in descriptors of the 16-px patches (``cell_descriptors`` with 16)."""
    return cell_descriptors(level1, 16)


def cell_descriptors(level1: dict, cell_px: int) -> np.ndarray:
    """[32, hc, wc] built-in descriptors of cells of ``cell_px`` pixels (``cell_px / 2`` level-1 texels
    a side), from the level-1 planes ``level1[c]`` (c = 3, 6, 7, 8, 15, 16): histograms of opponent
    colours (4x4), gradient orientation (8, magnitude weighted) and luminance (8); each normalized,
    square-rooted and scaled by 1/sqrt(3)."""
    rg, by, gx, gy, mag, lum = (np.asarray(level1[c], np.float64) for c in (15, 16, 6, 7, 8, 3))
    mag = _stat_texel(mag, np.float64).clip(0.0)  # clamped to [0, 1e4], NaN to 0 (semantic_math.h add_texel)
    cell = int(cell_px) // 2
    h1, w1 = rg.shape
    hc, wc = -(-h1 // cell), -(-w1 // cell)
    edges = np.array([-0.5, 0.0, 0.5])
    colour = np.searchsorted(edges, rg, side="right") * 4 + np.searchsorted(edges, by, side="right")
    ang = np.nan_to_num(np.arctan2(gy, gx), nan=0.0)  # NaN (a caller's texture): bin 0, as orientation_bin
    ang = np.where(ang < 0, ang + np.pi, ang)
    orient = np.clip((ang * (8 / np.pi)).astype(np.int64), 0, 7)
    lbin = np.clip((_clamp_or_zero(lum, 0.0, 1.0, np.float64) * 8).astype(np.int64), 0, 7)
    index = (np.arange(h1) // cell)[:, None] * wc + (np.arange(w1) // cell)[None, :]  # cell of each texel
    cells = hc * wc
    n = np.bincount(index.ravel(), minlength=cells).astype(np.float64)
    msum = np.bincount(index.ravel(), weights=mag.ravel(), minlength=cells)

    def histogram(bins, k, weights=None):
        w = None if weights is None else weights.ravel()
        return np.bincount((index * k + bins).ravel(), weights=w, minlength=cells * k).reshape(cells, k)

    out = np.concatenate([histogram(colour, 16) / n[:, None], histogram(orient, 8, mag) / (msum[:, None] + 1e-6),
                          histogram(lbin, 8) / n[:, None]], axis=1)
    return (np.sqrt(out) / np.sqrt(3.0)).T.reshape(32, hc, wc)


LAYOUT_WEIGHT = 0.7  # channel 33 with an exemplar layout: 0.3 * bag similarity + 0.7 * max(0, layout)


def layout_ncc(cells: np.ndarray, template: np.ndarray) -> np.ndarray:
    """[hc - th + 1, wc - tw + 1]: zero-mean normalized cross-correlation of ``template`` ([32, th, tw])
    at each placement on ``cells`` ([32, hc, wc]), over all cells and dims; the template is centred
    per dim over its cells; a flat window or template scores 0."""
    from numpy.lib.stride_tricks import sliding_window_view

    t = np.asarray(template, np.float64)
    t = t - t.mean(axis=(1, 2), keepdims=True)
    _, th, tw = t.shape
    win = sliding_window_view(np.asarray(cells, np.float64), (th, tw), axis=(1, 2))  # [32, ha, wa, th, tw]
    dot = np.einsum("kyxij,kij->yx", win, t)
    sums = win.sum(axis=(3, 4))
    energy = (win ** 2).sum(axis=(0, 3, 4)) - (sums ** 2).sum(axis=0) / (th * tw)
    den = np.sqrt((t ** 2).sum()) * np.sqrt(np.maximum(energy, 0.0))
    return np.where(den > 1e-6, dot / np.where(den > 1e-6, den, 1.0), 0.0)


def layout_similarity(level1: dict, templates, width: int, height: int) -> np.ndarray:
    """[h4, w4]: per 16-px patch, the best NCC of any template placement covering it (its 8-px cells,
    or the 32-px cell holding it), over ``templates`` = [(descriptors [32, th, tw], cell_px), ...];
    -1 where no template fits the frame."""
    h4, w4 = -(-int(height) // 16), -(-int(width) // 16)
    best = np.full((h4, w4), -1.0)
    for descriptors, cell_px in templates:
        cells = cell_descriptors(level1, cell_px)
        _, th, tw = np.shape(descriptors)
        hc, wc = cells.shape[1:]
        if th > hc or tw > wc:
            continue
        ncc = layout_ncc(cells, descriptors)
        covered = np.full((hc, wc), -1.0)  # best placement covering each cell
        ha, wa = ncc.shape
        for i in range(th):
            for j in range(tw):
                covered[i:i + ha, j:j + wa] = np.maximum(covered[i:i + ha, j:j + wa], ncc)
        if cell_px < 16:
            f = 16 // cell_px
            padded = np.full((h4 * f, w4 * f), -1.0)
            padded[:hc, :wc] = covered
            patch = padded.reshape(h4, f, w4, f).max(axis=(1, 3))
        else:
            f = cell_px // 16
            patch = covered[np.arange(h4) // f][:, np.arange(w4) // f]
        best = np.maximum(best, patch)
    return best


def exemplar_similarity(bag: np.ndarray, layout: np.ndarray) -> np.ndarray:
    """Channel 33 for an exemplar with a layout: the bag-of-patches similarity mixed with the
    positive layout match."""
    return (1.0 - LAYOUT_WEIGHT) * np.asarray(bag, np.float64) + LAYOUT_WEIGHT * np.maximum(layout, 0.0)


def similarity_map(features: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """[h, w]: the largest cosine similarity of each position's features ([C, h, w]) with any query ([K, C])."""
    f = np.asarray(features, np.float64)
    q = np.atleast_2d(np.asarray(queries, np.float64))
    fn = np.linalg.norm(f, axis=0)
    qn = np.linalg.norm(q, axis=1)
    dots = np.tensordot(q, f, axes=(1, 0))  # [K, h, w]
    denom = qn[:, None, None] * fn[None]
    cos = np.where(denom > 0, dots / np.where(denom > 0, denom, 1), 0.0)
    return cos.max(axis=0)


def semantic_projection(features: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """[16, h, w] = components . (features - mean) at every position."""
    f = np.asarray(features, np.float64) - np.asarray(mean, np.float64)[:, None, None]
    return np.tensordot(np.asarray(components, np.float64), f, axes=(1, 0))
