"""``arrcoc-rt serve [SOURCE]``: the live page (see arrcoc_rt.serve)."""

from __future__ import annotations

import argparse

DESCRIPTION = """A live page in the browser: the frame next to where the model looks (heat map of the budget per
patch, saccades coloured by level of detail, gestalt grid, scene cuts), fed by your webcam, an uploaded
video or image, or SOURCE on the server (a file, URL or webcam); a query drawn as a box on the frame, an
uploaded exemplar or text (with --encoder clip:PATH or siglip:PATH); the strategy, saccades, budget and
decay as sliders; a live chart of latency per stage and of the allocation; answers from a frozen VLM (--vlm).
Listens on 127.0.0.1 (this machine only) unless --host says otherwise. Needs the serve extra:
pip install "arrcoc_rt[serve]"."""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number; expected 1..65535") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is out of range; expected 1..65535")
    return port


def _size(text: str) -> str:
    """A size as Gradio reads it: a number and b, kb, mb, gb or tb."""
    import re

    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*(b|kb|mb|gb|tb)\s*", text, re.IGNORECASE):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; expected a number and b, kb, mb, gb or tb (e.g. 500mb)"
                                         + ("; a number alone has no unit" if re.fullmatch(r"\s*\d+(\.\d+)?\s*", text) else ""))
    if float(re.match(r"\s*(\d+(\.\d+)?)", text).group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: no upload would fit; expected a size above 0 (e.g. 500mb)")
    return text.strip().lower()


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``serve`` on an argparse subparsers object; ``run`` is its ``func`` default."""
    p = subparsers.add_parser("serve", help="a live page in the browser: watch where the model looks, steer it, "
                                            "ask it (needs the serve extra: Gradio)", description=DESCRIPTION)
    p.add_argument("source", nargs="?", help="a video file, URL (rtsp://...), webcam (/dev/videoN or N) or image "
                                             "folder on the server, playable from the page (default: none)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 shares it with "
                        "your network)")
    p.add_argument("--port", type=_port, default=7860, help="port, 1..65535 (default: 7860)")
    p.add_argument("--share", action="store_true",
                   help="also make a public gradio.live link (through Gradio's servers)")
    p.add_argument("--max-upload", default="2gb", type=_size,
                   help="the largest file the page accepts, e.g. 500mb or 2gb (default: 2gb; any web page you "
                        "visit can post files to a server on this machine, so the size is bounded)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--encoder", default="builtin",
                   help="builtin (default: exemplar queries) | clip:PATH | siglip:PATH (also text queries)")
    p.add_argument("--vlm", help="a frozen VLM to answer questions: llava:PATH, llava_next:PATH, qwen2_vl:PATH or "
                                 "qwen2_5_vl:PATH (a local checkpoint folder)")
    p.add_argument("--max-width", type=int, default=1280,
                   help="frames wider than this are scaled down before processing (default: 1280; 0: never)")
    p.set_defaults(func=run)
    return p


def _check(args) -> None:
    """The arguments that need nothing loaded, checked first (one-line errors)."""
    if args.encoder != "builtin" and not args.encoder.startswith(("clip:", "siglip:")):
        raise SystemExit(f"arrcoc-rt: error: --encoder {args.encoder!r}: expected builtin, clip:PATH or siglip:PATH")
    if args.max_width < 0 or 0 < args.max_width < 64:
        raise SystemExit(f"arrcoc-rt: error: --max-width {args.max_width}: expected 0 or at least 64")
    source = args.source
    if source is not None:
        import sys
        from pathlib import Path

        from ..sources import LIVE_PREFIXES

        camera = f"/dev/video{source}" if source.isdigit() else source if source.startswith("/dev/video") else None
        if camera is not None:
            if sys.platform.startswith("linux") and not Path(camera).exists():
                raise SystemExit(f"arrcoc-rt: error: SOURCE {source!r}: no camera {camera} on this machine")
        elif not source.startswith(LIVE_PREFIXES):
            if not Path(source).exists():
                raise SystemExit(f"arrcoc-rt: error: SOURCE {source!r} does not exist")
            from ..sources import SourceError, open as open_source

            try:  # a file the page could not play is refused now, as `run` refuses it (not at Play)
                open_source(source).close()
            except (SourceError, ValueError) as e:
                raise SystemExit(f"arrcoc-rt: error: SOURCE {source!r}: {e}") from None


def _check_port(host: str, port: int) -> None:
    """The port is free (Gradio's own message names an environment variable, not --port)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise SystemExit(f"arrcoc-rt: error: --host {host!r}: {e.strerror or e}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no clash
        try:
            probe.bind(address)
        except OSError as e:
            raise SystemExit(f"arrcoc-rt: error: --port {port}: cannot listen on {host}:{port} "
                             f"({e.strerror or e}); choose another --port") from None


def config_from_args(args):
    """A ServeConfig from the parsed arguments (loads the encoder and the VLM once)."""
    from ..encoders import make_encoder
    from ..runtime import resolve_device
    from .session import ServeConfig

    _check(args)
    kind, ordinal = resolve_device(args.device)
    torch_device = "cpu" if kind == "cpu" else f"cuda:{ordinal}"
    encoder = "builtin" if args.encoder == "builtin" else make_encoder(args.encoder, torch_device)
    vlm = None
    if args.vlm:
        from ..vlm import make_adapter

        vlm = make_adapter(args.vlm, device=torch_device)
    return ServeConfig(source=args.source, device=torch_device, encoder=encoder, encoder_name=args.encoder, vlm=vlm,
                       vlm_name=args.vlm, max_width=args.max_width)


def run(args) -> int:
    _check(args)
    _check_port(args.host, args.port)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise SystemExit('arrcoc-rt: error: serve needs Gradio: pip install "arrcoc_rt[serve]"') from None
    from .app import build_app, launch, share_note

    config = config_from_args(args)
    app = build_app(config, host=args.host, port=args.port, share=args.share, max_upload=args.max_upload)
    print(f"arrcoc-rt serve: http://{args.host}:{args.port}/" + (f" (server source: {config.source})"
                                                                 if config.source is not None else ""))
    print(share_note(args.host, args.port, args.share).replace("`", ""))
    import signal

    def stop(signum, frame):  # SIGTERM (systemd, docker, timeout) ends it as Ctrl-C does: the finally below runs
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        launch(app, block=True, quiet=True)
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return 0
