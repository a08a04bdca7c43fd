"""The overlay drawing, and `arrcoc-rt serve`: a live page tested in a real browser (headless Chromium
from the system's packages, driven by Playwright; no browser download).

The browser test uploads a video made here with PyAV, waits for overlay frames, draws an exemplar
box on the frame with two mouse clicks and checks that the saccades move into it, watches the latency
chart update, plays the server's own source, clears and replaces the upload, streams the browser's
(fake) webcam and stops it, and saves a
screenshot to $ARRCOC_SCREENSHOT_DIR (or the test's tmp_path). It skips, saying why, only when no
Chromium is installed (CI installs Debian's `chromium`) or the serve extra / Playwright is missing.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import arrcoc_rt
from arrcoc_rt.samples import demo_clip, sample_frames
from arrcoc_rt.visualize import LOD_COLOURS, OVERLAY_LAYERS, budget_per_patch, overlay

from conftest import write_video

av = pytest.importorskip("av")

W, H = 320, 240
# The green triangle of sample_frames(320, 240): it stays still while the disc moves below it.
TRIANGLE = (224, 72, 288, 139)


def _share_in(result, box) -> float:
    sac = result.kinds == 1
    p, b = result.positions[sac], result.budgets[sac].astype(np.float64)
    x0, y0, x1, y1 = box
    inside = (p[:, 0] >= x0) & (p[:, 0] < x1) & (p[:, 1] >= y0) & (p[:, 1] < y1)
    return float(b[inside].sum() / b.sum())


# ----------------------------------------------------------------------------- the overlay

def test_overlay_layers_are_drawn_where_they_belong_and_switch_off():
    frames = demo_clip(W, H, frames=25)  # a scene cut at frame 24
    stream = arrcoc_rt.Stream(device="cpu")
    results = [stream.process(f) for f in frames]
    r, f = results[5], frames[5]
    off = {k: False for k in OVERLAY_LAYERS}
    assert np.array_equal(overlay(f, r, **off), f)  # nothing switched on: the frame itself

    # heat: the saccades' budget per patch (gestalt excluded), bright where it is large
    per_patch = budget_per_patch(r)
    assert per_patch.sum() == r.budgets[r.kinds == 1].sum()
    assert budget_per_patch(r, gestalt=True).sum() == r.homunculus.sum() == r.budgets[r.kinds >= 0].sum()
    heat = overlay(f, r, **dict(off, heat=True)).astype(int)
    changed = np.abs(heat - f).sum(axis=2)
    hot = np.kron(per_patch >= 256, np.ones((16, 16), bool))[:f.shape[0], :f.shape[1]]
    cold = np.kron(per_patch == 0, np.ones((16, 16), bool))[:f.shape[0], :f.shape[1]]
    assert hot.any() and changed[hot].mean() > 2 * changed[cold].mean()
    assert heat[hot][:, 0].mean() > heat[hot][:, 2].mean() + 60  # warm colours

    # saccades: boxes in their level of detail's colour, on their glimpse's outline
    boxes = overlay(f, r, **dict(off, saccades=True))
    fine = np.flatnonzero((r.kinds == 1) & (r.budgets >= 256))
    assert len(fine)
    hits = 0
    for t in fine:
        x0, y0 = (int(v) for v in r.boxes[t, :2])
        hits += np.abs(boxes[y0, x0 + 2].astype(int) - LOD_COLOURS[int(r.budgets[t])]).max() < 60
    assert hits >= len(fine) // 2  # later boxes may cross earlier ones
    # the gestalt grid is faint: a few percent of the pixels, each changed little (the lines: < 50 a channel)
    g = np.abs(overlay(f, r, **dict(off, gestalt=True)).astype(int) - f).sum(axis=2)
    assert 0.01 < np.mean(g > 0) < 0.2 and np.median(g[g > 0]) < 150
    # a scene cut gets a red frame; other frames do not
    cut = next(x for x in results if x.scene_cut)
    assert cut.frame_index == 24
    marked = overlay(frames[24], cut, **dict(off, cuts=True))
    assert np.all(marked[1, :, 0] > 200) and np.all(marked[1, :, 1] < 80)
    assert np.array_equal(overlay(f, r, **dict(off, cuts=True)), f)
    # legend and caption: dark panels with light text, in their corners only (top left, bottom left)
    def drawn(img, plain):
        ys, xs = np.nonzero(np.abs(img.astype(int) - plain).sum(axis=2))
        return ys, xs, img[ys, xs].max(axis=1)

    explained = dict(off, saccades=True, heat=True)  # the legend explains these two layers
    assert np.array_equal(overlay(f, r, **dict(off, legend=True)), f)  # and draws nothing without them
    for layer, corner, under in (("legend", "top", explained), ("caption", "bottom", off)):
        ys, xs, brightest = drawn(overlay(f, r, **dict(under, **{layer: True})), overlay(f, r, **under))
        h, w = f.shape[:2]
        assert len(ys) > 200, layer
        if corner == "top":  # a panel at the top left (320x240: 103 x 151 px)
            assert xs.max() < w / 2 and ys.max() < 0.75 * h, (layer, xs.max(), ys.max())
        else:  # a line along the bottom left
            assert xs.max() < 0.8 * w and ys.min() > 0.8 * h, (layer, xs.max(), ys.min())
        assert np.mean(brightest > 200) > 0.05, f"{layer}: no light text on its panel"
    # scale: the frame drawn k times as large, and the text larger with it (its font follows the drawn
    # size, at least 11 px: 320x240 at scale 2 draws a 14-px font, so the legend's panel grows 1.2x)
    lg = overlay(f, r, **dict(off, legend=True, caption=True), scale=2)
    assert lg.shape == (2 * f.shape[0], 2 * f.shape[1], 3)
    ys1, _, _ = drawn(overlay(f, r, **dict(explained, legend=True)), overlay(f, r, **explained))
    ys2, _, _ = drawn(overlay(f, r, **dict(explained, legend=True), scale=2), overlay(f, r, **explained, scale=2))
    assert ys2.max() > 1.15 * ys1.max()
    with pytest.raises(ValueError, match="scale"):
        overlay(f, r, scale=0)


# ----------------------------------------------------------------------------- the session, no browser

class _EchoAdapter:
    """A stand-in VLM that answers with what it was fed (no model to load)."""

    def prepare(self, rgb, pack, question):
        return {"shape": rgb.shape, "num_visual_tokens": int(np.sum(np.asarray(pack.kinds) >= 0))}

    def generate(self, inputs, max_new_tokens=32):
        return f"saw {inputs['shape']}"


_EchoAdapter.__module__ = "arrcoc_rt.vlm.echo"  # taken as an adapter (asked on demand), not a per-frame hook


def test_answers_name_the_frame_they_saw_across_settings_changes():
    from arrcoc_rt.serve import ServeConfig, Session

    s = Session(ServeConfig(device="cpu", vlm=_EchoAdapter(), vlm_name="echo"))
    s.start("upload")
    for f in sample_frames(W, H, 3):
        s.step(f)
    assert "frame 2 " in s.ask("what is it?")[0]
    s.update_settings(saccades=100)  # a new stream with the new settings
    s.step(sample_frames(W, H, 1)[0])
    assert "frame 3 " in s.ask("and now?")[0]  # was: frame 0 (the new stream counted from 0)


def test_session_settings_and_an_exemplar_box_move_the_saccades():
    from arrcoc_rt.serve import ServeConfig, Session

    s = Session(ServeConfig(device="cpu"))
    frames = sample_frames(W, H, 24, step=(4, 0))
    for f in frames[:6]:
        s.step(f)
    before = _share_in(s.last_result, TRIANGLE)
    assert s.click(*TRIANGLE[:2]).startswith("corner at")
    assert s.click(*TRIANGLE[2:]) == f"query: exemplar box ({TRIANGLE[0]}, {TRIANGLE[1]})-({TRIANGLE[2]}, {TRIANGLE[3]})"
    for f in frames[6:14]:
        s.step(f)
    after = _share_in(s.last_result, TRIANGLE)
    # The clip's text keeps its guardrail floor (256 tokens a patch) whatever the query: measured
    # 0.07 -> 0.30 with it, 0.10 -> 0.50 without (2026-11-30).
    assert after > max(3 * before, before + 0.2), (before, after)
    assert s.stream.pipeline.encoder is not None  # the exemplar brought the built-in encoder
    s.update_settings(strategy="saliency", saccades=40, total_budget=30000, decay=0.5)
    s.step(frames[14])
    cfg = s.stream.pipeline.config
    assert (cfg["strategy"], cfg["saccades"], cfg["total_budget"], cfg["decay"]) == ("saliency", 40, 30000, 0.5)
    assert s.last_result.num_saccades <= 40 and s.last_result.budgets.sum() <= 30000
    with pytest.raises(ValueError, match="total_budget"):
        s.update_settings(total_budget=1000)
    with pytest.raises(ValueError, match="CLIP or SigLIP"):
        s.set_text("a cat")
    crop = frames[14][TRIANGLE[1]:TRIANGLE[3], TRIANGLE[0]:TRIANGLE[2]]
    assert s.set_exemplar(crop) == "query: exemplar image (64x67)" and s.query.kind == "image"
    with pytest.raises(ValueError, match="at least 8 px"):
        s.set_exemplar(crop[:4])
    s.clear_query()
    s.step(frames[15])
    assert s.query is None and s.stream.pipeline.encoder is None
    assert "latency over the last 16 frames" in s.stats() and s.chart(force=True).shape[2] == 3
    # a still picture is drawn afresh after each change
    s.start("image")
    s.step(frames[0], still=True)
    n = s.frames
    s.set_layers(["heat"])
    s.update_settings(saccades=10)
    assert s.frames == n + 1 and s.last_result.num_saccades <= 10 and not s.last_result.motion_valid


def test_frames_are_fitted_keeping_their_shape():
    """Frames wider than --max-width are scaled down, and no side beyond what a pipeline takes (a
    20000 x 64 picture was refused; a 5000 x 10 one became 1280 x 16, stretched)."""
    from arrcoc_rt.serve import ServeConfig, Session

    s = Session(ServeConfig(device="cpu", max_width=1280))
    assert s.fit(np.zeros((10, 5000, 3), np.uint8)).shape == (3, 1280, 3)
    assert s.fit(np.zeros((20000, 64, 3), np.uint8)).shape == (16384, 52, 3)
    assert s.fit(np.zeros((480, 640), np.uint8)).shape == (480, 640, 3)
    assert Session(ServeConfig(device="cpu", max_width=0)).fit(np.zeros((9, 17000, 3), np.uint8)).shape == (9, 16384, 3)


def test_a_looping_upload_outlives_the_upload(tmp_path):
    """Gradio's cache cleanup deletes an upload after a while; a looping video reopened its file
    every loop and stopped with "does not exist" (about 10 minutes in). It plays a copy now."""
    pytest.importorskip("gradio", reason="the serve extra is not installed: pip install '.[serve]'")
    from arrcoc_rt.serve import ServeConfig
    from arrcoc_rt.serve.app import build_app

    clip = write_video(tmp_path / "clip.mp4", sample_frames(96, 64, 3))
    app = build_app(ServeConfig(device="cpu"))
    try:
        s = app.session(None)
        frames = app.play(s, "upload", str(clip), True)
        next(frames)
        clip.unlink()  # as Gradio's cleanup does
        for _ in range(7):  # past two loops
            next(frames)
        assert s.frames == 8 and s.source == "upload"
        copies = list(app.pictures.folder.glob("upload-*"))
        assert len(copies) == 1
        frames.close()  # the page's event ends
        assert not copies[0].exists()
        # errors name the file once (they named an upload by its cache path, twice, with FFmpeg's errno)
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(b"not a video" * 100)
        with pytest.raises(Exception, match="bad.mp4") as e:
            next(app.play(s, "upload", str(bad), False))
        message = str(e.value)
        assert message.count("bad.mp4") == 1 and str(tmp_path) not in message and "Errno" not in message, message
        with pytest.raises(Exception, match="does not exist") as e:
            next(app.play(s, "server", str(tmp_path / "missing.mp4"), False))
        assert str(e.value).count("missing.mp4") == 1 and str(tmp_path) in str(e.value)  # a server path as given
    finally:
        app.close()


def test_serve_cli_says_what_is_wrong_before_it_starts(tmp_path):
    """A camera the machine lacks, a port in use and a bad upload size are one-line errors at start
    (a missing camera failed at the first Play; a port in use printed the URL, then Gradio's advice
    to set an environment variable)."""
    pytest.importorskip("gradio", reason="the serve extra is not installed: pip install '.[serve]'")

    def serve(*args):
        return subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", "serve", *args], capture_output=True,
                              text=True, timeout=120)

    missing = next(n for n in range(90, 200) if not os.path.exists(f"/dev/video{n}"))
    for source in (str(missing), f"/dev/video{missing}"):
        r = serve(source)
        assert r.returncode == 2 and f"no camera /dev/video{missing}" in r.stderr and "Traceback" not in r.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = serve("--port", str(port))
    assert r.returncode == 2 and f"--port {port}: cannot listen" in r.stderr and "choose another --port" in r.stderr
    assert "http://" not in r.stdout
    r = serve("--max-upload", "lots")
    assert r.returncode == 2 and "'lots' is not a size" in r.stderr


def test_the_share_note_says_what_share_does():
    pytest.importorskip("gradio", reason="the serve extra is not installed: pip install '.[serve]'")
    from arrcoc_rt.serve.app import share_note

    assert "only this machine" in share_note("127.0.0.1", 7860)
    shared = share_note("127.0.0.1", 7860, share=True)
    assert "public gradio.live link" in shared and "only this machine" not in shared and "--share" not in shared


def test_cli_run_draws_the_layers_asked_for(tmp_path):
    write_video(tmp_path / "in.mp4", sample_frames(96, 64, 3))
    run = [sys.executable, "-m", "arrcoc_rt.cli", "run", "in.mp4", "--device", "cpu", "--quiet"]
    r = subprocess.run(run + ["--png-dir", "all"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(run + ["--png-dir", "none", "--hide", ",".join(OVERLAY_LAYERS)], capture_output=True,
                       text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    from PIL import Image

    with av.open(str(tmp_path / "in.mp4")) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for k, frame in enumerate(decoded):
        nothing = np.asarray(Image.open(tmp_path / "none" / f"overlay_{k:05d}.png"))
        assert np.array_equal(nothing, frame)  # every layer hidden: the frame itself
        assert not np.array_equal(np.asarray(Image.open(tmp_path / "all" / f"overlay_{k:05d}.png")), frame)
    r = subprocess.run(run + ["--hide", "heat,boxes"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 2 and "--hide heat,boxes: boxes is no overlay layer" in r.stderr


def test_serve_is_routed_by_the_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", "serve", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "127.0.0.1" in r.stdout and "--vlm" in r.stdout and "SOURCE" in r.stdout.upper()
    r = subprocess.run([sys.executable, "-m", "arrcoc_rt.cli", "serve", str(tmp_path / "missing.mp4")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- the page in a browser

def _chromium() -> str | None:
    for c in (os.environ.get("ARRCOC_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if c and os.path.exists(c):
            return c
    return None


def _wait(predicate, timeout: float, what: str, interval: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = predicate()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stream_strategy(session):
    """The strategy of the session's current pipeline; None while its new Stream has had no frame yet
    (a Stream builds its Pipeline at its first frame; read once: the session may swap streams)."""
    pipe = getattr(session.stream, "pipeline", None)
    return pipe.config["strategy"] if pipe is not None else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_page_in_a_real_browser(tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium found (/usr/bin/chromium; set ARRCOC_CHROMIUM): install it with "
                    "apt-get install -y chromium")
    pytest.importorskip("gradio", reason="the serve extra is not installed: pip install '.[serve]'")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install playwright")
    from arrcoc_rt.serve import ServeConfig
    from arrcoc_rt.serve.app import build_app, launch

    t_start = time.monotonic()
    video = write_video(tmp_path / "clip.mp4", sample_frames(W, H, 40, step=(4, 0)))
    server_clip = write_video(tmp_path / "server.mp4", sample_frames(160, 120, 20))
    port = _free_port()
    app = build_app(ServeConfig(source=str(server_clip), device="cpu"), port=port)
    launch(app, block=False, quiet=True)
    shots = Path(os.environ.get("ARRCOC_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    problems = []
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
            context = browser.new_context(viewport={"width": 1400, "height": 1300}, permissions=["camera"])
            page = context.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#overlay", timeout=30_000)
            page.wait_for_selector("#share-note", timeout=30_000)
            assert "only this machine can open it" in page.inner_text("#share-note")
            session = _wait(lambda: next(iter(app.sessions.values()), None), 30, "the page's session")
            assert not problems, problems  # the page loads without console errors

            # 1. upload a video: overlay frames arrive, paced at the clip's 10 fps
            page.locator("#upload input[type=file]").set_input_files(str(video))
            _wait(lambda: session.source == "upload" and session.frames >= 3, 30, "the first uploaded frames")
            def shown(selector: str) -> str:  # Gradio serves each picture from a folder named by its content's hash
                src = page.get_attribute(selector, "src") or ""
                digest = src.rsplit("/", 2)[-2] if "/gradio_api/file=" in src else ""
                return digest if len(digest) == 64 else ""

            overlays, charts = set(), set()
            _wait(lambda: overlays.add(shown("#overlay img")) or len(overlays - {""}) >= 4, 30,
                  "four different overlay frames in the page")
            _wait(lambda: charts.add(shown("#chart img")) or len(charts - {""}) >= 3, 30,
                  "the latency chart to change twice")
            n = session.frames
            _wait(lambda: f"{session.frames} frames" in page.inner_text("#stats") and session.frames > n, 30,
                  "the numbers under the chart to follow the frames")
            assert "(p50 / p95): texture" in page.inner_text("#stats")

            def mean_share(count: int) -> float:  # the triangle's share of the saccade budget, `count` frames
                values, seen = [], -1
                while len(values) < count:
                    f = _wait(lambda: session.frames != seen and session.frames, 30, "the next frame")
                    if session.last_result is not None:
                        values.append(session.saccade_budget_in(TRIANGLE))
                    seen = f
                return float(np.mean(values))

            before = mean_share(6)

            # 2. draw an exemplar box on the frame: "Draw a box" holds the frame shown still, then two
            #    clicks on its corners; the saccades move into the box
            page.locator("#draw-box").click()
            _wait(lambda: session.drawing, 30, "the frame to hold still")
            img = page.locator("#original img")

            def corner(x, y, status):
                geometry = ("e => { const r = e.getBoundingClientRect(); return [e.src, e.complete && e.naturalWidth > 0,"
                            " r.left, r.top, r.width, r.height, e.naturalWidth, e.naturalHeight]; }")
                last = [None]

                def settled():  # the picture shown is loaded and stays the same for 0.3 s
                    g = img.evaluate(geometry)
                    same = last[0] is not None and g[0] == last[0][0] and g[1]
                    last[0] = g
                    return g if same else None

                _, _, left, top, width, height, nw, nh = _wait(settled, 30, "the frame shown to settle", 0.3)
                r = min(width / nw, height / nh, 1.0)  # Gradio's own mapping (object-fit: contain, not enlarged)
                k = session.scale  # small frames are shown twice as large
                page.mouse.click(left + (width - nw * r) / 2 + (x + 0.3) * k * r,
                                 top + (height - nh * r) / 2 + (y + 0.3) * k * r)
                page.wait_for_function(f"document.querySelector('#query-status').innerText.includes('{status}')",
                                       timeout=30_000)

            corner(*TRIANGLE[:2], "opposite corner")
            corner(*TRIANGLE[2:], "exemplar box")
            assert session.query is not None and session.query.kind == "image"
            assert np.abs(np.subtract(session.query_box, TRIANGLE)).max() <= 2, session.query_box
            _wait(lambda: session.frames >= session.query_frame + 4, 30, "frames with the new query")
            after = mean_share(6)
            # The text guardrail, see above. The page's frames are decoded H.264 and its six frames fall
            # anywhere in the clip's loop: 0.066 -> 0.264 in one CI run (raw frames: 0.06-0.07 -> 0.27-0.32
            # at every phase), so a margin of 0.15 rather than the session test's 0.2.
            assert after > max(3 * before, before + 0.15), (before, after)
            # ... and so does the allocation: strategy 'query' through the page's radio buttons
            page.locator("#strategy").get_by_text("query", exact=True).click()
            _wait(lambda: session.settings.strategy == "query", 30, "the strategy to change")
            _wait(lambda: _stream_strategy(session) == "query", 30, "a stream with the new strategy")
            page.screenshot(path=str(shots / "serve_page.png"), full_page=True)

            # 3. the server's own source plays on request; Stop stops it
            page.get_by_role("tab", name="Server source").click()
            page.locator("#play-server").click()
            _wait(lambda: session.source == "server" and session.last_rgb.shape[:2] == (120, 160), 30,
                  "frames of the server's source")
            playing = session.playing
            page.locator("#stop").click()
            _wait(lambda: session.playing != playing, 30, "Stop to reach the server")
            time.sleep(1.0)  # a frame already on its way may still land
            n = session.frames
            time.sleep(1.0)
            assert session.frames == n, "Stop did not stop the server's source"

            # 4. the file cleared from the page stops its looping video, and another upload plays (it
            #    was dropped while the first one's event still ran)
            page.get_by_role("tab", name="Upload").click()
            clear = page.locator("#upload button[aria-label='Clear'], #upload button[aria-label*='emove']").first
            clear.click()  # the clip of step 1
            page.locator("#upload input[type=file]").set_input_files(str(video))
            _wait(lambda: session.source == "upload" and session.last_rgb.shape[:2] == (H, W), 30, "the clip again")
            playing = session.playing
            clear.click()
            _wait(lambda: session.playing != playing, 30, "clearing the file to stop its video")
            time.sleep(1.0)
            n = session.frames
            time.sleep(1.0)
            assert session.frames == n, "clearing the file did not stop its video"
            page.locator("#upload input[type=file]").set_input_files(str(server_clip))
            _wait(lambda: session.source == "upload" and session.last_rgb.shape[:2] == (120, 160), 30,
                  "the second upload's frames")

            # 5. the browser's webcam (Chromium's fake camera), streamed; Stop stops it too
            page.get_by_role("tab", name="Webcam").click()
            page.get_by_text("Click to Access Webcam").click()
            page.locator("#webcam button", has_text="Record").click()
            n = session.frames
            _wait(lambda: session.source == "webcam" and session.frames >= n + 3, 45, "webcam frames")
            page.screenshot(path=str(shots / "serve_webcam.png"), full_page=True)
            page.locator("#stop").click()
            _wait(lambda: session.webcam_held, 30, "Stop to reach the server")
            time.sleep(0.5)
            n = session.frames
            time.sleep(1.5)
            assert session.frames == n, "Stop did not stop the webcam"
            browser.close()
    finally:
        app.close()
    assert not problems, problems
    assert (shots / "serve_page.png").stat().st_size > 50_000
    print(f"browser test: {time.monotonic() - t_start:.1f} s; screenshots in {shots}")


def test_a_text_query_and_answers_in_the_browser(tmp_path):
    """With a CLIP encoder and a VLM configured (tiny random models built here: the real loading
    code runs, nothing is downloaded), a text typed in the page becomes the query, and the page
    answers a question about the latest frame (an uploaded picture) with the frame it saw and the
    latency."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium found (/usr/bin/chromium; set ARRCOC_CHROMIUM): install it with "
                    "apt-get install -y chromium")
    pytest.importorskip("gradio", reason="the serve extra is not installed: pip install '.[serve]'")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install playwright")
    for module in ("torch", "transformers", "tokenizers"):
        pytest.importorskip(module)
    from PIL import Image
    from test_hf_encoders import _tiny  # tests/: a tiny CLIP saved with its tokenizer
    from vlm_models import build_tiny_llava  # tests/vlm_models.py

    from arrcoc_rt.encoders import HFEncoder
    from arrcoc_rt.serve import ServeConfig
    from arrcoc_rt.serve.app import build_app, launch
    from arrcoc_rt.vlm import make_adapter

    clip = HFEncoder(_tiny("clip", tmp_path / "clip"), "clip", "cpu")
    vlm = make_adapter(f"llava:{build_tiny_llava(tmp_path / 'llava')}", device="cpu", tokens=64)
    Image.fromarray(sample_frames(W, H, 1)[0]).save(tmp_path / "still.png")
    port = _free_port()
    app = build_app(ServeConfig(device="cpu", encoder=clip, encoder_name="clip:tiny", vlm=vlm, vlm_name="llava:tiny"),
                    port=port)
    launch(app, block=False, quiet=True)
    problems = []
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#question", timeout=30_000)
            session = _wait(lambda: next(iter(app.sessions.values()), None), 30, "the page's session")
            page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "still.png"))
            _wait(lambda: session.source == "image" and session.frames == 1, 30, "the picture to be processed")
            assert session.stream.pipeline.encoder is None  # no query: no encoder runs
            page.wait_for_selector("#overlay img", timeout=30_000)
            # a text query: the picture is allocated again at once, with CLIP's similarity to the text
            page.locator("#query-text textarea").fill("a red cat")
            page.locator("#query-text textarea").press("Enter")
            page.wait_for_function("document.querySelector('#query-status').innerText.includes(\"text 'a red cat'\")",
                                   timeout=60_000)
            assert session.query.kind == "text" and session.frames == 2
            assert session.stream.pipeline.encoder is clip
            q = session.last_result.query_score[session.last_result.candidates >= 0]
            assert np.ptp(q) > 0  # the query's relevance varies over the candidates (neutral: all 0.5)
            # a question
            page.locator("#question textarea").fill("what is here ?")
            page.locator("#ask").click()
            page.wait_for_function("document.querySelector('#answer').innerText.includes('visual tokens')",
                                   timeout=60_000)
            answer = page.inner_text("#answer")
            page.wait_for_selector("#answer-frame img", timeout=30_000)
            browser.close()
    finally:
        app.close()
    assert not problems, problems
    question, a, seen = session.answers[-1]
    # the latest frame: the picture allocated again with the text query (by a new stream, which
    # keeps the page's frame numbers: the page's second frame)
    assert question == "what is here ?" and a.frame_index == session.last_result.frame_index == 1
    assert a.visual_tokens == 64 and f"frame 1 · 64 visual tokens · {a.latency_ms['total']:.0f} ms" in answer
    assert seen.shape == (2 * H, 2 * W, 3)  # the overlay of the frame it saw, as shown
