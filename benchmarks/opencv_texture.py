"""The texture channels written the way a user would with OpenCV + NumPy (float32), as the
baseline arrcoc's kernels are compared against. Same channels and window sizes; mipmaps with
cv2.resize(INTER_AREA); block matching vectorized in NumPy. Not bit-identical to arrcoc (that
is what arrcoc_rt.reference is for) - it is the alternative a user would otherwise write."""

import cv2
import numpy as np


def _mips(planes, levels=5):
    out = [planes]
    for _ in range(1, levels):
        prev = out[-1]
        h, w = prev[0].shape
        size = ((w + 1) // 2, (h + 1) // 2)
        out.append([cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in prev])
    return out


def _block_match(cur, prev, radius=4, block=4):
    # OpenCV does the per-displacement work: |cur - shifted| (absdiff) and its block means
    # (INTER_AREA at an integer factor), as a user would write it; NumPy's reshape-and-sum of the
    # same took 5-8x longer and a third of the peer's time (a trial's profile).
    h, w = cur.shape
    hb, wb = h // block, w // block
    cur = np.ascontiguousarray(cur[: hb * block, : wb * block])
    pad = cv2.copyMakeBorder(prev, radius, radius, radius, radius, cv2.BORDER_REPLICATE)
    best = np.full((hb, wb), np.inf, np.float32)
    mv = np.zeros((2, hb, wb), np.float32)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            sh = pad[radius + dy : radius + dy + hb * block, radius + dx : radius + dx + wb * block]
            sad = cv2.resize(cv2.absdiff(cur, sh), (wb, hb), interpolation=cv2.INTER_AREA)
            better = sad < best
            np.copyto(best, sad, where=better)
            mv[0][better], mv[1][better] = -4 * dx, -4 * dy
    return mv


def texture_opencv(frame, prev_lum=None, prev_small=None):
    rgb = frame.astype(np.float32) / 255.0
    r, g, b = cv2.split(rgb)
    lum = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    mean = cv2.boxFilter(lum, -1, (5, 5), borderType=cv2.BORDER_REPLICATE)
    sq = cv2.boxFilter(lum * lum, -1, (5, 5), borderType=cv2.BORDER_REPLICATE)
    contrast = np.sqrt(np.maximum(sq - mean * mean, 0))
    gx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8
    gy = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8
    mag = cv2.magnitude(gx, gy)
    hp = np.abs(cv2.Laplacian(lum, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REPLICATE)) / 4
    edge = cv2.boxFilter(mag, -1, (5, 5), borderType=cv2.BORDER_REPLICATE)
    motion = (cv2.boxFilter(cv2.absdiff(lum, prev_lum), -1, (5, 5), borderType=cv2.BORDER_REPLICATE)
              if prev_lum is not None else np.zeros_like(lum))
    bins = np.minimum((lum * 8).astype(np.int32), 7)
    entropy = np.zeros_like(lum)
    for k in range(8):
        p = cv2.boxFilter((bins == k).astype(np.float32), -1, (5, 5), borderType=cv2.BORDER_REPLICATE)
        entropy -= p * np.log2(np.maximum(p, 1e-12))
    entropy /= 3
    rg, by = r - g, b - 0.5 * (r + g)
    h, w = lum.shape
    xx = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5  # broadcast: no full-frame index grids
    yy = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h - 0.5
    ecc = np.minimum(1, np.hypot(xx, yy) * np.float32(np.sqrt(2)))
    level0 = [r, g, b, lum, contrast, ecc, gx, gy, mag, hp, motion, edge, entropy, rg, by]
    pyr = _mips(level0)
    # saliency: centre-surround of luminance and opponents across the pyramid, at level 1
    h1, w1 = pyr[1][0].shape
    sal = np.zeros((h1, w1), np.float32)
    for idx, wgt in ((3, 1.0), (13, 0.5), (14, 0.5)):
        c1 = pyr[1][idx]
        c2 = cv2.resize(pyr[2][idx], (w1, h1), interpolation=cv2.INTER_LINEAR)
        s3 = cv2.resize(pyr[3][idx], (w1, h1), interpolation=cv2.INTER_LINEAR)
        s4 = cv2.resize(pyr[4][idx], (w1, h1), interpolation=cv2.INTER_LINEAR)
        sal += wgt * 0.5 * (np.abs(c1 - s3) + np.abs(c2 - s4))
    sal /= 3
    small = pyr[2][3] * 16
    mv = _block_match(small, prev_small) if prev_small is not None else None
    return pyr, sal, mv, lum, small
