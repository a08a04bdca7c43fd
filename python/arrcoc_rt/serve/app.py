"""The Gradio page of ``arrcoc-rt serve``: layout and events. Everything it shows comes from a
``Session`` (session.py) per browser tab; this file only wires components to it."""

import collections
import itertools
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine

import gradio as gr  # noqa: E402  (the serve extra; Gradio reads gr.Request / gr.SelectData annotations)
import numpy as np  # noqa: E402

from ..images import read_rgb8  # noqa: E402
from ..pipeline import STRATEGIES  # noqa: E402
from ..sources import IMAGE_SUFFIXES  # noqa: E402
from ..visualize import OVERLAY_LAYERS  # noqa: E402
from .session import (  # noqa: E402
    BUDGET_RANGE, SACCADE_RANGE, ServeConfig, Session, Settings)

LAYER_LABELS = {"heat": "heat map (budget per patch)", "saccades": "saccade boxes", "gestalt": "gestalt grid",
                "cuts": "scene cuts", "legend": "legend", "caption": "caption"}
WEBCAM_RESTART_GAP_S = 1.0  # after Stop, the webcam's frames count again once its stream paused this long

CSS = """
#stats p { margin: 0.15em 0; }
.frame-title p { margin: 0; font-weight: 600; }
"""


def share_note(host: str, port: int | None, share: bool = False) -> str:
    """Where the page listens and how to open it to others."""
    where = f"{host}:{port}" if port else host
    if share:
        return (f"Listening on {where}, and shared through a public gradio.live link (Gradio's servers; it "
                f"expires, see Gradio's message): anyone with the link can use the page and its server-side source.")
    if host in ("127.0.0.1", "localhost", "::1"):
        return (f"Listening on {where}: only this machine can open it. To share it, restart with `--host 0.0.0.0` "
                f"(anyone who can reach this machine's port can use it and its server-side source), tunnel it "
                f"(`ssh -L {port or 7860}:127.0.0.1:{port or 7860} THIS_HOST`), or use `--share` (a public "
                f"gradio.live link through Gradio's servers, for as long as Gradio keeps it).")
    return (f"Listening on {where}: anyone who can reach this port can use the page. Restart without `--host` "
            f"to keep it on this machine.")


class Pictures:
    """Pictures handed to Gradio as files, each written once under a new name. Gradio copies a file
    into its cache under the hash of its content, atomically; an array it would write itself, in
    place, so a picture sent twice (a looping video) could be read half-written. The last ``keep``
    files stay (Gradio copies each as soon as it is returned); older ones are deleted."""

    def __init__(self, keep: int = 256):
        self.folder = Path(tempfile.mkdtemp(prefix="arrcoc-serve-"))
        self._names = itertools.count()
        self._files = collections.deque()
        self._keep = keep
        self._lock = threading.Lock()

    def __call__(self, rgb, fmt: str = "jpeg"):
        if rgb is None:
            return None
        from PIL import Image

        with self._lock:
            path = self.folder / f"{next(self._names)}.{'jpg' if fmt == 'jpeg' else fmt}"
            self._files.append(path)
            old = self._files.popleft() if len(self._files) > self._keep else None
        Image.fromarray(rgb).save(path, format=fmt.upper(), **({"quality": 88} if fmt == "jpeg" else {}))
        if old is not None:
            old.unlink(missing_ok=True)
        return str(path)

    def copy_of(self, path) -> Path:
        """A copy of a file in this folder, under a new name: Gradio's cache cleanup deletes uploads
        (after 2 minutes, delete_cache below) while a looping video still reopens its file."""
        with self._lock:
            own = self.folder / f"upload-{next(self._names)}{Path(str(path)).suffix.lower()}"
        shutil.copyfile(path, own)
        return own

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class ServeApp:
    """The page and its sessions (one per browser tab, by Gradio's session hash)."""

    def __init__(self, config: ServeConfig, *, host: str = "127.0.0.1", port: int | None = None,
                 share: bool = False, max_upload: str = "2gb"):
        self.config = config
        self.host, self.port, self.share, self.max_upload = host, port, share, max_upload
        self.sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.pictures = Pictures()
        self.blocks = self._build()

    def close(self) -> None:
        """Stops the server and every playback; deletes the pictures written."""
        with self._lock:
            for s in self.sessions.values():
                s.stop()
        self.blocks.close()
        self.pictures.close()

    def session(self, request: gr.Request) -> Session:
        key = getattr(request, "session_hash", None) or "default"
        with self._lock:
            if key not in self.sessions:
                self.sessions[key] = Session(self.config)
            return self.sessions[key]

    def _drop(self, request: gr.Request) -> None:
        key = getattr(request, "session_hash", None)
        with self._lock:
            s = self.sessions.pop(key, None)
        if s is not None:
            s.stop()

    # ------------------------------------------------------------------ layout and events
    def _build(self):
        cfg = self.config
        # Gradio's own cache of the pictures sent (2-3 per frame, about 2.4 MB/s at 1280x720 and 10
        # fps) and of uploads: every minute, files older than 2 minutes go (uploads are copied out
        # first: Pictures.copy_of)
        with gr.Blocks(title="arrcoc_rt: where the model looks", analytics_enabled=False,
                       delete_cache=(60, 120)) as demo:
            gr.Markdown("## arrcoc_rt: where a frozen VLM looks, frame by frame\n"
                        "Right: heat = budget per patch; boxes = saccades coloured by level of detail (400, 384, "
                        "256, 128, 64: legend in the corner; coarse boxes faint); faint grid = gestalt; red frame = "
                        "scene cut. Feed it below: a video or an image, your webcam"
                        + (", or the server's source" if cfg.source is not None else "") + ".")
            with gr.Row(equal_height=True):
                with gr.Column():
                    gr.Markdown("The frame: click two corners of an object to look for it (or first press "
                                "*Draw a box*: the frame holds still)", elem_classes="frame-title")
                    original = gr.Image(label="The frame", show_label=False, interactive=False, format="jpeg",
                                        elem_id="original", buttons=["fullscreen"], height=480)
                with gr.Column():
                    gr.Markdown("Where the model looks", elem_classes="frame-title")
                    shown = gr.Image(label="Where the model looks", show_label=False, interactive=False,
                                     format="jpeg", elem_id="overlay", buttons=["download", "fullscreen"], height=480)
            with gr.Row():
                with gr.Column(scale=3):
                    with gr.Tabs():
                        with gr.Tab("Upload", id="tab-upload", elem_id="tab-upload"):
                            upload = gr.File(label="A video or an image", file_types=["video", "image"],
                                             type="filepath", elem_id="upload", height=120)
                            loop = gr.Checkbox(True, label="Loop videos", elem_id="loop")
                        with gr.Tab("Webcam", id="tab-webcam", elem_id="tab-webcam"):
                            cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Your webcam",
                                           elem_id="webcam", height=240)
                        if cfg.source is not None:
                            with gr.Tab("Server source", id="tab-server", elem_id="tab-server"):
                                gr.Markdown(f"On the server: `{cfg.source}`")
                                play_server = gr.Button("Play the server's source", elem_id="play-server")
                    stop = gr.Button("Stop", elem_id="stop", size="sm")
                with gr.Column(scale=3):
                    query_status = gr.Markdown("query: none", elem_id="query-status")
                    exemplar = gr.Image(label="…or upload an exemplar picture", sources=["upload"], type="numpy",
                                        elem_id="exemplar", height=120)
                    if cfg.text_queries:
                        text = gr.Textbox(label=f"Text query ({cfg.encoder_name})", elem_id="query-text",
                                          placeholder="e.g. a red mug; Enter to apply")
                    else:
                        gr.Markdown("Text queries need a CLIP/SigLIP encoder: `arrcoc-rt serve --encoder clip:PATH`.")
                    with gr.Row():
                        draw_box = gr.Button("Draw a box on the frame", elem_id="draw-box", size="sm")
                        clear = gr.Button("No query", elem_id="clear-query", size="sm")
                with gr.Column(scale=4):
                    d = Settings()
                    strategy = gr.Radio(list(STRATEGIES), value=d.strategy, label="Strategy", elem_id="strategy")
                    saccades = gr.Slider(*SACCADE_RANGE, value=d.saccades, step=1, label="Saccades",
                                         elem_id="saccades")
                    budget = gr.Slider(*BUDGET_RANGE, value=d.total_budget, step=16, label="Total budget",
                                       elem_id="budget")
                    decay = gr.Slider(0.0, 1.0, value=d.decay, step=0.05, label="Temporal decay", elem_id="decay")
                    layers = gr.CheckboxGroup([(LAYER_LABELS[k], k) for k in OVERLAY_LAYERS], value=list(OVERLAY_LAYERS),
                                              label="Overlay", elem_id="layers")
            chart = gr.Image(label="Latency per stage and allocation (live)", show_label=False, interactive=False,
                             format="png", elem_id="chart", buttons=["download"])
            stats = gr.Markdown("No frames yet.", elem_id="stats")
            if cfg.vlm is not None:
                with gr.Row():
                    with gr.Column(scale=3):
                        question = gr.Textbox(label=f"Ask the model ({cfg.vlm_name}) about the latest frame",
                                              elem_id="question")
                        ask = gr.Button("Ask", elem_id="ask")
                        answer = gr.Markdown(elem_id="answer")
                    answer_frame = gr.Image(label="The frame it saw", interactive=False, format="jpeg",
                                            elem_id="answer-frame", scale=2)
            else:
                gr.Markdown("Answers need a frozen VLM: `arrcoc-rt serve --vlm llava:PATH` (or qwen2_vl:PATH, "
                            "qwen2_5_vl:PATH; a local checkpoint folder).")
            gr.Markdown(share_note(self.host, self.port, self.share), elem_id="share-note")

            live = [original, shown, chart, stats]

            pic = self.pictures

            def play_upload(path, loop_video, request: gr.Request):
                yield from self.play(self.session(request), "upload", path, loop_video)

            def play_source(loop_video, request: gr.Request):
                yield from self.play(self.session(request), "server", cfg.source, loop_video)

            # "multiple": a new upload or play starts while a looping video's event is still running
            # (the default, "once", dropped it silently); its s.start() stops the older playback
            up_event = upload.upload(play_upload, [upload, loop], live, show_progress="hidden", trigger_mode="multiple")
            events = [up_event]
            if cfg.source is not None:
                events.append(play_server.click(play_source, [loop], live, show_progress="hidden",
                                                trigger_mode="multiple"))

            def webcam_frame(frame, request: gr.Request):
                s = self.session(request)
                if frame is None:
                    return gr.skip(), gr.skip(), gr.skip(), gr.skip()
                now, last = time.monotonic(), s.webcam_seen
                s.webcam_seen = now
                if s.webcam_held:  # Stop holds the webcam until its stream stops and starts again
                    if now - last < WEBCAM_RESTART_GAP_S:
                        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
                    s.webcam_held = False
                if s.source != "webcam":
                    s.start("webcam")  # stops a video playing in this tab
                return self.frame_outputs(s, s.step(frame))

            cam.stream(webcam_frame, [cam], live, stream_every=0.1, concurrency_limit=None, show_progress="hidden")

            def on_stop(request: gr.Request):
                s = self.session(request)
                s.stop()
                if s.source == "webcam":
                    s.webcam_held = True

            stop.click(on_stop, None, None, cancels=events)
            upload.clear(on_stop, None, None, cancels=events)  # the file gone from the page: its video stops

            def refreshed(s: Session, message: str):
                ov = s.last_overlay
                return (message, pic(s.original()) if ov is not None else gr.skip(),
                        gr.skip() if ov is None else pic(ov), s.stats())

            def on_click(evt: gr.SelectData, request: gr.Request):
                s = self.session(request)
                x, y = evt.index[0], evt.index[1]  # pixels of the picture shown: the frame times s.scale
                return refreshed(s, s.click(x / s.scale, y / s.scale))

            query_out = [query_status, original, shown, stats]
            # every click counts, in order (the default drops clicks while one is still on its way)
            original.select(on_click, None, query_out, show_progress="hidden", trigger_mode="multiple",
                            concurrency_limit=1)

            def on_draw(request: gr.Request):
                s = self.session(request)
                return refreshed(s, s.begin_box())

            draw_box.click(on_draw, None, query_out, show_progress="hidden")

            def on_exemplar(img, request: gr.Request):
                s = self.session(request)
                if img is None:
                    return refreshed(s, s.clear_query())
                try:
                    return refreshed(s, s.set_exemplar(img))
                except ValueError as e:
                    raise gr.Error(str(e)) from None

            def on_clear(request: gr.Request):
                s = self.session(request)
                return refreshed(s, s.clear_query())

            exemplar.upload(on_exemplar, [exemplar], query_out, show_progress="hidden")
            exemplar.clear(on_clear, None, query_out, show_progress="hidden")
            clear.click(on_clear, None, query_out, show_progress="hidden")
            if cfg.text_queries:
                def on_text(t, request: gr.Request):
                    s = self.session(request)
                    try:
                        return refreshed(s, s.set_text(t))
                    except (TypeError, ValueError) as e:
                        raise gr.Error(str(e)) from None

                text.submit(on_text, [text], query_out, show_progress="hidden")

            def on_settings(st, n, b, dk, request: gr.Request):
                s = self.session(request)
                try:
                    msg = s.update_settings(st, n, b, dk)
                except (TypeError, ValueError) as e:
                    raise gr.Error(str(e)) from None
                return refreshed(s, msg)

            knobs = [strategy, saccades, budget, decay]
            strategy.change(on_settings, knobs, query_out, show_progress="hidden")
            for k in (saccades, budget, decay):
                k.release(on_settings, knobs, query_out, show_progress="hidden")

            def on_layers(ls, request: gr.Request):
                s = self.session(request)
                s.set_layers(ls)
                return pic(s.last_overlay) if s.last_overlay is not None else gr.skip()

            layers.change(on_layers, [layers], [shown], show_progress="hidden")

            if cfg.vlm is not None:
                def on_ask(q, request: gr.Request):
                    s = self.session(request)
                    try:
                        reply, seen = s.ask(q)
                        return reply, pic(seen)
                    except (TypeError, ValueError) as e:
                        raise gr.Error(str(e)) from None

                ask.click(on_ask, [question], [answer, answer_frame])
                question.submit(on_ask, [question], [answer, answer_frame])

            def on_load(request: gr.Request):
                self.session(request)

            demo.load(on_load, None, None)
            demo.unload(self._drop)
        demo.queue(default_concurrency_limit=8)
        return demo

    def frame_outputs(self, s: Session, ov):
        """The page's four live outputs after a frame."""
        pic = self.pictures
        c = s.chart()  # with the numbers, at most every CHART_EVERY_S: the page has less to redraw
        return (gr.skip() if s.drawing else pic(s.original()), pic(ov),
                gr.skip() if c is None else pic(c, "png"), gr.skip() if c is None else s.stats())

    def play(self, s: Session, kind: str, path, loop_video: bool):
        """Plays an upload ('upload': an image or a video) or the server's source ('server') in
        session s, yielding the page's outputs per frame."""
        pic = self.pictures
        if path is None:
            return
        if kind == "upload" and Path(str(path)).suffix.lower() in IMAGE_SUFFIXES:
            rgb = read_rgb8(path, "upload")
            s.start("image")
            ov = s.step(rgb, still=True)
            yield pic(s.original()), pic(ov), pic(s.chart(force=True), "png"), s.stats()
            return
        if kind != "upload":
            yield from self._play_video(s, kind, path, str(path), loop_video)
            return
        own = pic.copy_of(path)  # the upload itself goes when Gradio cleans its cache
        try:
            yield from self._play_video(s, kind, own, Path(str(path)).name, loop_video)
        finally:
            own.unlink(missing_ok=True)

    def _play_video(self, s: Session, kind: str, path, name: str, loop_video: bool):
        """Frames of a file, URL or webcam on the server, paced at the source's rate (a live source
        sets its own pace), until stopped or superseded; files loop when asked. ``name``: the file
        as the user knows it, for messages (an upload's path is a cache folder's)."""
        from ..sources import SourceError, open as open_source

        pid = s.start(kind)
        while True:
            try:
                src = open_source(int(path) if str(path).isdigit() else path)
            except (SourceError, ValueError) as e:
                raise gr.Error(_named(e, path, name)) from None
            rate = float(getattr(getattr(src, "stream", None), "average_rate", None) or 0) or 25.0
            live = getattr(src, "live", False)
            t_start, n = time.monotonic(), 0
            try:
                for frame in src:
                    if s.playing != pid:
                        return
                    rgb = frame.to_ndarray(format="rgb24") if hasattr(frame, "planes") else np.asarray(frame)
                    ov = s.step(rgb)
                    n += 1
                    yield self.frame_outputs(s, ov)
                    if not live:  # a file plays at its own rate, not as fast as it decodes
                        ahead = t_start + n / rate - time.monotonic()
                        if ahead > 0:
                            time.sleep(ahead)
            finally:
                src.close()
            if n == 0 and s.playing == pid:  # it opened, but no frame decoded: say so, not a silent page
                raise gr.Error(f"{name}: no decodable video frames ({'; '.join(src.stats.errors) or 'none in it'})")
            if not loop_video or live or n == 0 or s.playing != pid:
                return


def _named(error: Exception, path, name: str) -> str:
    """An error about ``path`` as the user knows the file (``name``), once, without FFmpeg's errno."""
    message = re.sub(r"\[Errno -?\d+\] ", "", str(error).replace(str(path), name))
    message = re.sub(f": '{re.escape(name)}'$", "", message)  # FFmpeg's messages end with the file again
    return message if name in message else f"{name}: {message}"


def build_app(config: ServeConfig | None = None, *, host: str = "127.0.0.1", port: int | None = None,
              share: bool = False, max_upload: str = "2gb") -> ServeApp:
    """The page for ``config`` (see ServeConfig); ``launch(app)`` serves it. ``max_upload``: the
    largest file the page accepts (Gradio's size syntax, e.g. "500mb"): any web page the user visits
    can post files to a local server, so the size is bounded."""
    return ServeApp(config or ServeConfig(), host=host, port=port, share=share, max_upload=max_upload)


def launch(app: ServeApp, *, block: bool = True, quiet: bool = False):
    """Serves the page on app.host:app.port (127.0.0.1 by default); returns Gradio's (app, local
    URL, share URL)."""
    return app.blocks.launch(server_name=app.host, server_port=app.port, share=app.share, prevent_thread_lock=not block,
                             quiet=quiet, show_error=True, ssr_mode=False, theme=gr.themes.Default(), css=CSS,
                             footer_links=[], max_file_size=app.max_upload)
