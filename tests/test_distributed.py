"""arrcoc_rt.distributed on a local Ray cluster started here (2 CPUs): many sources against
sequential Streams, backpressure, an actor killed mid-stream, sources that fail alone, resumable
batch conversion to Parquet, and the CLI (`run SOURCE... --ray`, `batch`). Real videos encoded
here with PyAV (160x120, with scene cuts)."""

import io
import json
import os
import socket
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")
av = pytest.importorskip("av")

import arrcoc_rt  # noqa: E402
from arrcoc_rt.distributed import FramePack, read_parquet, run_batch, run_many  # noqa: E402
from arrcoc_rt.distributed.worker import StreamWorker  # noqa: E402
from arrcoc_rt.samples import demo_clip  # noqa: E402
from conftest import write_video  # noqa: E402

CUTS = (8, 11, 14, 17)  # scene cut of clip i (its first frame of the second shot)
FRAMES = (30, 26, 34, 28)


class LiveCamera(threading.Thread):
    """A live camera: an MPEG-TS stream over TCP, sent in real time. A client that connects gets the
    stream from where it is now; what was sent while it was away is gone (as with RTSP)."""

    def __init__(self, frames, rate=10):
        super().__init__(daemon=True)
        buf = io.BytesIO()
        with av.open(buf, "w", format="mpegts") as c:
            s = c.add_stream("mpeg4", rate=rate)
            s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
            s.codec_context.gop_size = 2  # a reconnecting client finds a keyframe soon
            for f in frames:
                c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            c.mux(s.encode())
        self.data, self.seconds, self.period = buf.getvalue(), len(frames) / rate, 1.0 / rate
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.url = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"

    def now(self) -> int:  # byte position of "now", on a 188-byte TS packet boundary
        return int(min(1.0, (time.time() - self.t0) / self.seconds) * len(self.data)) // 188 * 188

    def run(self):
        self.t0 = time.time()
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._send, args=(conn,), daemon=True).start()

    def _send(self, conn):
        pos = self.now()
        try:
            while pos < len(self.data):
                end = self.now()
                if end > pos:
                    conn.sendall(self.data[pos:end])
                    pos = end
                time.sleep(0.02)
        except OSError:
            pass
        finally:
            conn.close()


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return [str(write_video(d / f"clip{i}.mp4", demo_clip(160, 120, frames=n, cut_at=c)))
            for i, (n, c) in enumerate(zip(FRAMES, CUTS))]


@pytest.fixture(scope="module")
def sequential(clips):
    """Each clip through its own Stream, one after the other: the reference results."""
    out = []
    for p in clips:
        with arrcoc_rt.open(p) as src, arrcoc_rt.Stream(device="cpu") as stream:
            out.append([stream.process(f) for f in src])
    return out


def by_source(packs):
    got = {}
    for p in packs:
        got.setdefault(p.source_index, []).append(p)
    return got


def assert_same(packs, results):
    assert [p.frame_index for p in packs] == list(range(len(results)))  # each frame once, in order
    for p, r in zip(packs, results):
        assert p.same_tokens(r), p.frame_index
        assert p.pts == r.pts and (p.width, p.height) == r.frame_size


def test_four_sources_match_four_sequential_streams(cluster, clips, sequential, capsys):
    assert [sum(r.scene_cut for r in rs) for rs in sequential] == [1, 1, 1, 1]  # the clips' cuts are found
    with run_many(clips, device="cpu", progress=True) as run:
        packs = list(run)
    assert run.placement["actors"] == 2 and run.placement["streams_per_actor"] == 2  # 2 CPUs: 2 actors, 2 streams each
    got = by_source(packs)
    for i, results in enumerate(sequential):
        assert all(p.source == clips[i] for p in got[i])
        assert_same(got[i], results)
    for r, n in zip(run.summary(), FRAMES):
        assert (r["status"], r["frames"], r["restarts"], r["lost_frames"], r["corrupt_packets"]) == \
            ("complete", n, 0, 0, 0)
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p95"] and r["fps"] > 0
    assert "frame/s" in capsys.readouterr().err  # the progress bars show frames per second per source


def test_workers_never_run_far_ahead_of_the_consumer(cluster, clips):
    """Backpressure: a slow consumer holds the worker back to (prefetch + 1) x batch_frames frames."""
    with run_many(clips[2:3], device="cpu", batch_frames=2, prefetch=1, progress=False) as run:
        first = next(run)
        time.sleep(1.5)  # unbounded, the worker would have read the whole clip by now (about 5 ms a frame)
        read = ray.get(run.actor_of(0).ping.remote())["streams"]["s0"]
        assert first.frame_index == 0 and read <= 1 + (1 + 1) * 2, read
        rest = list(run)
    assert [p.frame_index for p in [first] + rest] == list(range(FRAMES[2]))


@pytest.mark.parametrize("resume", ["exact", "skip"])
def test_an_actor_killed_mid_stream_is_restarted_and_no_frame_is_lost_or_repeated(cluster, clips, sequential, resume):
    killed = []
    with run_many(clips[:3], device="cpu", batch_frames=3, max_restarts=2, resume=resume, progress=False) as run:
        packs = []
        for p in run:
            packs.append(p)
            if p.source_index == 0 and p.frame_index == 15 and not killed:  # after clip 0's cut at frame 8
                killed.append(ray.get(run.actor_of(0).ping.remote())["pid"])
                ray.kill(run.actor_of(0), no_restart=False)
        pid_after = ray.get(run.actor_of(0).ping.remote())["pid"]
    assert killed and pid_after != killed[0]  # a new process
    got = by_source(packs)
    reports = run.summary()
    for i in range(3):
        assert [p.frame_index for p in got[i]] == list(range(FRAMES[i]))
        assert (reports[i]["status"], reports[i]["frames"], reports[i]["lost_frames"]) == ("complete", FRAMES[i], 0)
        shared = i % run.placement["actors"] == 0  # on the killed actor (round-robin placement)
        assert reports[i]["restarts"] == (1 if shared else 0), reports
        if resume == "exact":
            assert_same(got[i], sequential[i])  # the state rebuilt: the same tokens as without the fault
    assert reports[0]["replayed_frames"] > 0 if resume == "exact" else reports[0]["replayed_frames"] == 0
    if resume == "skip":  # the state starts afresh at the resume point; what came before is the uninterrupted run
        assert all(p.same_tokens(r) for p, r in zip(got[0][:16], sequential[0][:16]))


def test_a_killed_live_source_reconnects_and_the_frames_it_missed_are_counted(cluster):
    """A live camera (TCP MPEG-TS at 10 frames/s, 10 s): the actor is killed after 8 frames; the
    restarted actor reconnects and the stream goes on. Frame indices stay consecutive (nothing twice),
    and every frame of the camera between the first and the last one delivered was either delivered
    or counted as lost. (At 6 s, a restart slowed by a busy machine could find the camera already
    finished: an empty stream, 'Invalid data found when processing input'.)"""
    camera = LiveCamera(demo_clip(160, 120, frames=100, cut_at=50))
    camera.start()
    killed = False
    with run_many([camera.url], device="cpu", batch_frames=2, progress=False,
                  source_options={"timeout": (10.0, 10.0)}) as run:
        packs = []
        for p in run:
            packs.append(p)
            if p.frame_index == 7 and not killed:
                ray.kill(run.actor_of(0), no_restart=False)
                killed = True
    r = run.summary()[0]
    assert r["status"] == "complete" and r["restarts"] == 1 and r["meta"]["live"], r
    assert [p.frame_index for p in packs] == list(range(len(packs)))
    ticks = [int(round(p.pts / camera.period)) for p in packs]  # the camera's own frame numbers
    assert ticks == sorted(set(ticks)) and ticks[8] > ticks[7] + 1  # later frames, none twice; a gap at the restart
    assert r["lost_frames"] > 0 and len(packs) + r["lost_frames"] == ticks[-1] - ticks[0] + 1, (r, ticks)


def test_a_resumed_file_seeks_to_the_frame_before_the_last_cut(clips, sequential):
    """The worker alone (no Ray): resume at frame 20 of clip 3, rebuilding the state from the frame
    before its cut (16): it seeks there instead of decoding from the start, and gives the
    uninterrupted stream's frames."""
    cut = CUTS[3]
    pts = sequential[3][cut - 1].pts
    w = StreamWorker({"device": "cpu"}, {})
    assert w.open("k", 1, clips[3], 3, resume_at=20, warm_from=cut - 1, seek=(cut - 1, pts))["state"] == "ok"
    packs, state = [], "ok"
    while state == "ok":
        reply = w.next("k", 1, 4)
        packs += reply["packs"]
        state = reply["state"]
    assert state == "done" and reply["stats"]["replayed"] == 20 - (cut - 1)
    assert reply["stats"]["decoded"] == FRAMES[3] - (cut - 1)  # nothing before the seek point was decoded
    assert [p.frame_index for p in packs] == list(range(20, FRAMES[3]))
    assert all(p.same_tokens(r) for p, r in zip(packs, sequential[3][20:]))
    assert w.next("k", 0, 4)["state"] == "unknown"  # an older epoch touches nothing


def test_a_source_that_fails_for_good_is_reported_and_the_others_complete(cluster, clips, tmp_path):
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    sources = [clips[0], str(tmp_path / "missing.mp4"), str(noise), clips[1]]
    with run_many(sources, device="cpu", progress=False) as run:
        got = by_source(list(run))
    r = run.summary()
    assert [x["status"] for x in r] == ["complete", "failed", "failed", "complete"]
    assert "does not exist" in r[1]["error"] and "cannot open" in r[2]["error"]
    assert len(got[0]) == FRAMES[0] and len(got[3]) == FRAMES[1] and 1 not in got and 2 not in got


def test_batch_writes_parquet_per_file_and_a_rerun_skips_finished_files(cluster, clips, sequential, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in clips:
        os.symlink(p, corpus / os.path.basename(p))
    (corpus / "broken.mp4").write_bytes(b"not a video" * 100)
    out = tmp_path / "packs"
    reports = run_batch([str(corpus)], out, device="cpu", progress=False)
    by_name = {os.path.basename(r["source"]): r for r in reports}
    assert by_name["broken.mp4"]["status"] == "failed" and "cannot open" in by_name["broken.mp4"]["error"]
    for i, p in enumerate(clips):
        r = by_name[os.path.basename(p)]
        assert r["status"] == "complete" and r["frames"] == FRAMES[i]
        table = pq.read_table(r["parquet"])  # plain pyarrow reads it: one row per frame, the tokens as columns
        assert table.num_rows == FRAMES[i] and table.column("frame_index").to_pylist() == list(range(FRAMES[i]))
        assert len(table.column("positions")[0]) == len(sequential[i][0].positions)
        packs = read_parquet(r["parquet"])
        assert all(isinstance(x, FramePack) for x in packs)
        assert_same(packs, sequential[i])
    assert not list(out.glob("*.partial"))
    summary = json.loads((out / "_summary.json").read_text())
    assert len(summary["files"]) == 5

    # Rerun: finished files are skipped (not rewritten); one whose Parquet is damaged is done again.
    done = [by_name[os.path.basename(p)]["parquet"] for p in clips]
    mtimes = [os.path.getmtime(p) for p in done]
    with open(done[2], "r+b") as f:
        f.truncate(os.path.getsize(done[2]) // 2)  # no footer any more
    again = {os.path.basename(r["source"]): r for r in run_batch([str(corpus / "*.mp4")], out, device="cpu",
                                                                 progress=False)}
    statuses = [again[os.path.basename(p)]["status"] for p in clips]
    assert statuses == ["skipped", "skipped", "complete", "skipped"]
    assert again["broken.mp4"]["status"] == "failed"
    assert [os.path.getmtime(p) for i, p in enumerate(done) if i != 2] == [m for i, m in enumerate(mtimes) if i != 2]
    assert_same(read_parquet(done[2]), sequential[2])


def test_cli_run_ray_and_batch(cluster, clips, tmp_path, capsys):
    from arrcoc_rt import cli

    out = tmp_path / "run"
    rc = cli.main(["run", clips[0], clips[1], str(tmp_path / "missing.mp4"), "--ray", "--out", str(out), "--quiet",
                   "--device", "cpu"])
    assert rc == 1  # one source failed; the others are complete
    summary = json.loads((out / "_summary.json").read_text())
    s = {r["index"]: r for r in summary["sources"]}
    assert s[2]["status"] == "failed" and s[2]["output"] is None
    for i in (0, 1):
        assert s[i]["status"] == "complete" and s[i]["frames"] == FRAMES[i]
        assert {"dropped", "corrupt_packets", "lost_frames"} <= set(s[i]) and set(s[i]["latency_ms"]) >= {"p50", "p95"}
        lines = [json.loads(x) for x in open(s[i]["output"])]
        assert [x["frame"] for x in lines] == list(range(FRAMES[i]))
        assert set(lines[0]["tokens"][0]) == {"x", "y", "level", "budget", "kind", "patch", "score"}
    printed = capsys.readouterr().out
    assert "complete" in printed and "failed" in printed and "does not exist" in printed

    assert cli.main(["run", clips[0], clips[1]]) == 2  # several sources without --ray: a clear error
    assert "add --ray" in capsys.readouterr().err

    rc = cli.main(["batch", clips[0], clips[3], "--out", str(tmp_path / "b"), "--quiet", "--device", "cpu"])
    assert rc == 0 and len(list((tmp_path / "b").glob("*.parquet"))) == 2
    assert "2 converted" in capsys.readouterr().out
    assert cli.main(["batch", clips[0], clips[3], "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert "2 already complete (skipped)" in capsys.readouterr().out
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    rc = cli.main(["batch", clips[0], str(broken), str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "b"),
                   "--device", "cpu"])
    printed = capsys.readouterr().out
    failed = [line for line in printed.splitlines() if line.startswith("failed")]
    assert rc == 1 and len(failed) == 2, printed  # one line per failed file (was: the task's failures twice)


def test_batch_reruns_files_made_with_other_options_and_reports_empty_inputs(cluster, clips, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "opts"
    first = run_batch([clips[0]], out, device="cpu", progress=False)
    assert first[0]["status"] == "complete"
    assert run_batch([clips[0]], out, device="cpu", num_threads=2, progress=False)[0]["status"] == "skipped"
    # other options: converted again (was: skipped, the old tokens kept under the new options)
    again = run_batch([clips[0]], out, device="cpu", strategy="random", progress=False)[0]
    assert again["status"] == "complete" and again["frames"] == FRAMES[0]
    assert run_batch([clips[0]], out, device="cpu", strategy="random", progress=False)[0]["status"] == "skipped"
    # the output folder reads as one Parquet dataset (the summary's leading _ keeps it out)
    assert pq.read_table(str(out)).num_rows == FRAMES[0]
    # a redo the cluster refuses keeps the finished file (was: deleted before the refusal)
    with pytest.raises(ValueError, match="no node of this cluster has"):
        run_batch([clips[0]], out, device="cpu", strategy="random", redo=True, num_cpus=64, progress=False)
    assert len(list(out.glob("*.parquet"))) == 1
    # the options' record names objects by their state, not their address: a rerun in another
    # process (other addresses) skips the file
    from arrcoc_rt.distributed.batch import options_key
    from arrcoc_rt.encoders import PCA16

    assert options_key({"pca": PCA16(8)}, {}) == options_key({"pca": PCA16(8)}, {})
    assert " at 0x" not in options_key({"pca": PCA16(8)}, {})
    # an option value no source takes is refused before anything is touched (was: the finished file
    # deleted as made with other options, then every task failed on the value)
    for bad_options in ({"fps": -1.0}, {"start": 5.0, "end": 1.0}, {"stride": 0}):
        with pytest.raises(ValueError):
            run_batch([clips[0]], out, device="cpu", source_options=bad_options, progress=False)
    assert len(list(out.glob("*.parquet"))) == 1
    # a redo that fails leaves no stale file and names none (a start past the clip's end: no frame)
    bad = run_batch([clips[0]], out, device="cpu", source_options={"start": 500.0}, redo=True, progress=False)[0]
    assert bad["status"] == "failed" and bad["parquet"] is None and not list(out.glob("*.parquet"))
    keys = set(bad)
    assert all(set(r) == keys for r in json.loads((out / "_summary.json").read_text())["files"])

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"")
    reports = run_batch([clips[1], str(tmp_path / "none" / "*.mp4"), str(images), os.path.relpath(clips[1])],
                        tmp_path / "inputs", device="cpu", progress=False)
    # was: the pattern and the folder vanished, and the second spelling of clips[1] raced the first
    assert [r["status"] for r in reports] == ["complete", "failed", "failed"]
    assert "matches no file" in reports[1]["error"] and "no video files" in reports[2]["error"]


@pytest.mark.parametrize("options, message", [({"num_cpus": -1}, "num_cpus"), ({"num_cpus": 0}, "num_cpus"),
                                              ({"max_retries": -1}, "max_retries"),
                                              ({"rows_per_group": 0}, "rows_per_group"),
                                              ({"num_gpus": -1}, "num_gpus"),
                                              ({"source_options": {"bogus": 1}}, "bogus")])
def test_batch_refuses_bad_options_before_any_task(clips, tmp_path, options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        run_batch([clips[0]], tmp_path / "o", device="cpu", progress=False, **options)
    assert not (tmp_path / "o").exists()


def test_batch_interrupted_lists_every_file(cluster, clips, tmp_path):
    """Ctrl-C (here raised by the per-file callback) still writes the summary, the unfinished files
    'stopped', and goes on as a KeyboardInterrupt (the CLI exits 130; it printed Ray's traceback)."""
    def stop(report):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch([clips[0], clips[3]], tmp_path / "i", device="cpu", progress=False, on_file=stop)
    summary = json.loads((tmp_path / "i" / "_summary.json").read_text())
    assert summary["interrupted"] and {r["status"] for r in summary["files"]} <= {"complete", "stopped"}
    assert sum(r["status"] == "stopped" for r in summary["files"]) >= 1
    again = run_batch([clips[0], clips[3]], tmp_path / "i", device="cpu", progress=False)
    assert {r["status"] for r in again} <= {"complete", "skipped"}


@pytest.mark.parametrize("kwargs, error", [({"sources": None}, TypeError), ({"num_cpus": "1"}, ValueError),
                                           ({"num_gpus": -1}, ValueError), ({"max_frames": True}, ValueError)])
def test_run_many_refuses_bad_arguments_before_a_cluster(kwargs, error, clips):
    kwargs = {"sources": clips[:1], **kwargs}
    with pytest.raises(error, match=next(iter(k for k in kwargs if k != "sources"), "sources")):
        run_many(kwargs.pop("sources"), device="cpu", progress=False, **kwargs)


def test_an_unreachable_cluster_address_is_an_error_at_once():
    import socket
    import time

    from arrcoc_rt.distributed.live import _check_reachable

    with socket.socket() as s:  # a port that was just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.monotonic()
    with pytest.raises(ConnectionError, match=f"cannot connect to 127.0.0.1:{port}"):
        _check_reachable(f"127.0.0.1:{port}")
    assert time.monotonic() - t < 10  # was: Ray's retries, for many minutes
    _check_reachable("auto")  # Ray finds that one itself


def test_relative_paths_reach_actors_of_a_cluster_started_elsewhere(cluster, clips, tmp_path, monkeypatch):
    """The actors' working directory is the cluster's, not the driver's: a relative path is made
    absolute first (it was 'does not exist' once the driver had moved)."""
    from arrcoc_rt.weights import default_weights, save_weights

    monkeypatch.chdir(tmp_path)
    rel = os.path.relpath(clips[0])
    save_weights(default_weights(), "w.npz")  # relative too: read by the driver
    with run_many([rel], device="cpu", progress=False, weights="w.npz") as run:
        packs = list(run)
    (report,) = run.summary()
    assert report["status"] == "complete" and len(packs) == FRAMES[0] and report["source"] == rel
    assert {p.source for p in packs} == {rel}  # as given, though the actor opened the absolute path


def test_requests_no_node_can_meet_are_refused_at_once(cluster, clips, tmp_path):
    """Ray would wait forever for a node with 4 CPUs, a GPU or a custom resource this cluster lacks."""
    for kwargs in ({"num_cpus": 4}, {"num_gpus": 1}, {"actor_options": {"resources": {"camera_room_1": 1}}}):
        with pytest.raises(ValueError, match="no node of this cluster has"):
            run_many(clips[:1], device="cpu", progress=False, **kwargs)
    with pytest.raises(ValueError, match="no node of this cluster has"):
        run_batch([clips[0]], tmp_path / "o", device="cpu", num_cpus=4, progress=False)
    with pytest.raises(TypeError, match="bogus"):
        run_many(clips[:1], device="cpu", progress=False, source_options={"bogus": 1})


def test_one_source_given_alone_and_frames_counted_as_delivered(cluster, clips):
    with run_many(clips[2], device="cpu", batch_frames=8, progress=False) as run:  # a str: one source
        for i, p in enumerate(run):
            if i == 9:
                break
    (report,) = run.summary()
    assert report["source"] == clips[2] and report["frames"] == 10  # was: 16, the whole batch of 8 counted


def test_a_worker_delivers_the_frames_it_gathered_before_a_failure(clips):
    """StreamWorker without Ray: an unexpected error on the third frame of a request of 8 fails the
    source and still returns the two frames processed (was: raised, the two lost)."""
    from arrcoc_rt.distributed.worker import StreamWorker

    w = StreamWorker({"device": "cpu"})
    assert w.open("k", 0, clips[0], 0)["state"] == "ok"
    st = w._open["k"]
    real, calls = st.stream.process, []

    def failing(frame):
        calls.append(1)
        if len(calls) == 3:
            raise IndexError("list index out of range")
        return real(frame)

    st.stream.process = failing
    reply = w.next("k", 0, 8)
    assert reply["state"] == "failed" and "IndexError" in reply["error"] and reply["fatal"]  # no reconnection
    assert [p.frame_index for p in reply["packs"]] == [0, 1]
