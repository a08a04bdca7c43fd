"""``arrcoc-rt serve``: a live page (Gradio) to watch where the model looks, steer it and ask it.

    arrcoc-rt serve                     # http://127.0.0.1:7860: upload a video or an image, or use the webcam
    arrcoc-rt serve clip.mp4            # also play a file, URL or webcam on the server
    arrcoc-rt serve --encoder clip:/models/clip-vit-b16 --vlm llava:/models/llava-1.5-7b-hf

Needs the ``serve`` extra (``pip install "arrcoc_rt[serve]"``: Gradio). ``session.py`` holds what a
browser tab sees (stream, query, settings, timings) with no web code; ``app.py`` lays out the page;
``charts.py`` draws the live chart; the overlays are ``arrcoc_rt.visualize.overlay``.
"""

from .session import ServeConfig, Session, Settings

__all__ = ["ServeConfig", "Session", "Settings", "build_app", "launch"]


def build_app(*args, **kwargs):
    from .app import build_app

    return build_app(*args, **kwargs)


def launch(*args, **kwargs):
    from .app import launch

    return launch(*args, **kwargs)
