"""Live sources that fail and come back (docs/RELIABILITY.md): a real RTSP server made here
(tests/rtsp_server.py: libx264 H.264 over RTP/TCP) is stopped mid-stream, stalled, or never comes
back; a file is read while a recorder still writes it."""

import os
import threading
import time

import numpy as np
import pytest

import arrcoc_rt

av = pytest.importorskip("av")
if "libx264" not in av.codecs_available:
    pytest.skip("needs PyAV with libx264 (the server sends H.264)", allow_module_level=True)

from rtsp_server import RtspServer, encode_h264  # noqa: E402

FAST = dict(timeout=(5.0, 1.0), reconnect_backoff=(0.2, 1.0))  # a lost read within ~1 s, quick retries


@pytest.fixture(scope="module")
def clip():
    return encode_h264(n=50, size=(160, 120), fps=25)


def _later(seconds, fn):
    t = threading.Timer(seconds, fn)
    t.daemon = True
    t.start()
    return t


def test_rtsp_server_that_restarts_is_reconnected_and_the_gap_is_counted(clip):
    server = RtspServer(*clip).start()
    try:
        src = arrcoc_rt.open(server.url, **FAST)
        stream = arrcoc_rt.Stream(device="cpu")
        results, after, t_stop = [], 0, None
        for frame in src:
            r = stream.process(frame)
            results.append(r)
            if len(results) == 20:  # the camera reboots: everything closed, nothing listening for 1.5 s
                server.stop()
                t_stop = time.monotonic()
                _later(1.5, server.start)
            if r.reconnected or after:
                after += 1
                if after == 20:
                    break
        src.close()
    finally:
        server.stop()
    st = src.stats
    flagged = [r for r in results if r.reconnected]
    assert st.disconnects == 1 and st.reconnects == 1, st
    assert len(flagged) == 1 and flagged[0].frame_index > 20
    # The gap runs from the last frame before the loss to the first after it: at least the 1.5 s the
    # server was down, less than that plus a backoff step, a connection and a read timeout.
    assert flagged[0].gap_s == pytest.approx(st.gap_s)
    assert 1.5 <= st.gap_s < 1.5 + 1.0 + 10.0
    assert time.monotonic() - t_stop >= 1.5
    assert server.sessions == 2
    assert st.delivered == len(results) == st.decoded and st.corrupt_packets == 0
    # Frames after the gap are processed normally; the flagged one starts without history.
    assert not flagged[0].follows_a_frame and flagged[0].num_saccades > 0
    assert all(r.glimpses.shape == results[0].glimpses.shape for r in results)
    assert not any(r.reconnected for r in results[:20])


def test_rtsp_server_that_stalls_is_reconnected_after_the_read_timeout(clip):
    with RtspServer(*clip) as server:
        src = arrcoc_rt.open(server.url, **FAST)
        n, gaps = 0, []
        for frame in src:
            n += 1
            if n == 15:
                server.stall()  # the connection stays open but nothing arrives
            if isinstance(frame.opaque, arrcoc_rt.SourceGap):
                gaps.append(frame.opaque)
            if gaps and n >= 40:
                break
        src.close()
    assert src.stats.disconnects == 1 and src.stats.reconnects == 1
    assert len(gaps) == 1 and gaps[0].attempts == 1
    assert 1.0 <= gaps[0].seconds < 1.0 + 0.2 + 10.0  # the read timeout, a backoff step and a reopen
    assert "connection lost" in " ".join(src.stats.errors)


def test_rtsp_server_that_never_comes_back_ends_with_a_clear_error(clip):
    server = RtspServer(*clip).start()
    src = arrcoc_rt.open(server.url, timeout=(2.0, 1.0), reconnect_attempts=3, reconnect_backoff=(0.1, 0.2))
    n = 0
    t0 = None
    with pytest.raises(arrcoc_rt.SourceError, match=r"connection lost .* 3 reconnection attempt\(s\) over 0\.5 s failed"):
        for _ in src:
            n += 1
            if n == 10:
                server.stop()
                t0 = time.monotonic()
    # 0.1 + 0.2 + 0.2 s of backoff with refused connections: no hang.
    assert time.monotonic() - t0 < 5.0
    assert src.stats.disconnects == 1 and src.stats.reconnects == 0 and src.stats.gap_s == 0
    src.close()


def test_closing_a_source_that_waits_to_reconnect_returns_at_once(clip):
    server = RtspServer(*clip).start()
    src = arrcoc_rt.open(server.url, on_full="drop", timeout=(2.0, 1.0), reconnect_backoff=(30.0, 30.0))
    it = iter(src)
    for _ in range(5):
        next(it)
    server.stop()
    time.sleep(0.5)  # the reader thread is now in its 30 s backoff
    t0 = time.monotonic()
    src.close()
    assert time.monotonic() - t0 < 2.0
    assert src.stats.decoded == src.stats.delivered + src.stats.dropped


def test_reconnection_options_are_checked(clip):
    with RtspServer(*clip) as server:
        for bad, msg in (({"reconnect_attempts": -1}, "reconnect_attempts"), ({"reconnect_attempts": 1.5}, "reconnect_attempts"),
                         ({"reconnect_backoff": (2.0, 1.0)}, "first_s <= max_s"), ({"reconnect_backoff": "x"}, "reconnect_backoff"),
                         ({"follow": 1.0}, "not for live sources")):
            with pytest.raises(ValueError, match=msg):
                arrcoc_rt.open(server.url, **bad)
    with pytest.raises(arrcoc_rt.SourceError, match="cannot open"):  # nothing listens: at once, no retry
        arrcoc_rt.open("rtsp://127.0.0.1:9/live", timeout=(2.0, 1.0))


def test_reconnect_attempts_zero_ends_the_stream_at_the_loss(clip):
    server = RtspServer(*clip).start()
    src = arrcoc_rt.open(server.url, reconnect_attempts=0, timeout=(5.0, 1.0))
    n = 0
    for _ in src:
        n += 1
        if n == 10:
            server.stop()
    assert 10 <= n < 30 and src.stats.disconnects == 0
    src.close()


def _record(path, frames: int, started: threading.Event, fps: int = 25):
    """A recorder that writes MPEG-TS in real time (random frames: they fill the probe quickly)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format="mpegts") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        s.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i in range(frames):
            img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
            if i == 5:
                started.set()
            time.sleep(1.0 / fps)
        for p in s.encode():
            c.mux(p)


def test_a_file_still_being_written_is_followed_to_its_end(tmp_path):
    path = tmp_path / "recording.ts"
    started = threading.Event()
    recorder = threading.Thread(target=_record, args=(path, 60, started), daemon=True)
    recorder.start()
    started.wait(10)
    size_at_open = os.path.getsize(path)
    with arrcoc_rt.open(str(path), follow=1.0) as src:
        n = sum(1 for _ in src)
    recorder.join()
    assert n == 60, f"{n} of the 60 frames written (the file had {size_at_open} bytes when opened)"
    assert src.stats.corrupt_packets == 0 and src.stats.decoded == 60
    with pytest.raises(ValueError, match="follow"):
        arrcoc_rt.open(str(path), follow=0)


def test_cli_run_reports_the_lost_connection_and_flags_the_frame_after_it(clip, tmp_path):
    import json
    import subprocess
    import sys

    with RtspServer(*clip) as server:
        p = subprocess.Popen([sys.executable, "-m", "arrcoc_rt.cli", "run", server.url, "--device", "cpu", "--quiet",
                              "--max-frames", "60", "--jsonl", "t.jsonl", "--reconnect", "3"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        jsonl = tmp_path / "t.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(jsonl.read_text().splitlines() if jsonl.exists() else []) < 15:
            time.sleep(0.05)
        server.stop()
        time.sleep(1.0)
        server.start()
        out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "1 connection(s) lost, 1 reconnected" in out, out
    lines = [json.loads(ln) for ln in jsonl.read_text().splitlines()]
    assert len(lines) == 60
    flagged = [ln for ln in lines if ln.get("reconnected")]
    assert len(flagged) == 1 and flagged[0]["gap_s"] >= 1.0 and flagged[0]["frame"] >= 15
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["disconnects"] == summary["reconnects"] == 1 and summary["gap_s"] >= 1.0


def test_closing_during_the_reconnection_wait_ends_the_loop_cleanly(clip):
    """A user's close() from another thread while the source waits to reconnect: the loop ends,
    no "reconnection attempts failed" error (was: a SourceError counting attempts never made)."""
    server = RtspServer(*clip).start()
    try:
        src = arrcoc_rt.open(server.url, timeout=(2.0, 1.0), reconnect_backoff=(30.0, 30.0))
        got = 0
        for _ in src:
            got += 1
            if got == 5:
                server.stop()
                _later(2.5, src.close)  # after the read timed out, during the 30 s backoff
        assert got >= 5 and src.stats.disconnects == 1 and src.stats.reconnects == 0
    finally:
        server.stop()


@pytest.mark.parametrize("mode", [dict(drop_oldest=True), dict(on_full="block")], ids=["drop_oldest", "block"])
def test_an_abandoned_threaded_source_lets_its_reader_go(clip, mode):
    """`for f in src: break` without close() (or an exception in the loop): the reader thread and
    its connection end (was: kept alive, decoding, until the process exited)."""
    import gc

    server = RtspServer(*clip).start()
    try:
        def read_one():
            for _ in arrcoc_rt.open(server.url, timeout=(5.0, 1.0), **mode):
                break

        read_one()
        gc.collect()
        deadline = time.monotonic() + 5.0
        while any(t.name == "arrcoc-source" for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(t.name == "arrcoc-source" for t in threading.enumerate())
    finally:
        server.stop()
