"""A small RTSP server for the live-source tests: H.264 over RTP, interleaved on the RTSP TCP
connection (RFC 2326 + RFC 6184), the way IP cameras serve it with ``rtsp_transport=tcp``.

FFmpeg cannot play this part: its RTSP muxer only publishes to a server (ANNOUNCE/RECORD), and its
``rtsp_flags=listen`` mode is for receiving a publisher. So the tests serve real encoded H.264 (made
by libx264 through PyAV) with this server, and FFmpeg's own RTSP client (through PyAV, as
``arrcoc_rt.open`` uses it) reads it. The tests can stop the server in the middle of a stream (every
connection closed, nothing listening), start it again on the same port, or stall it (connections kept
open, nothing sent) to test reconnection.
"""

from __future__ import annotations

import base64
from fractions import Fraction
import socket
import struct
import threading
import time

import numpy as np


def encode_h264(n: int = 50, size=(160, 120), fps: int = 25, gop: int = 10) -> tuple[list[bytes], bytes, bytes]:
    """``n`` frames of a moving pattern as H.264 access units (lists of NAL units, Annex B split),
    plus the SPS and PPS. Keyframes every ``gop`` frames, so a client that joins late starts soon."""
    import av

    w, h = size
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps, 1)
    ctx.gop_size = gop
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "bframes": "0", "repeat-headers": "1"}
    yy, xx = np.mgrid[0:h, 0:w]
    units, sps, pps = [], b"", b""
    packets = []
    for i in range(n):
        img = np.stack([(xx * 2 + i * 4) % 256, (yy * 2) % 256, ((xx + yy + i * 8) // 2) % 256], -1).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    for p in packets:
        nals = [x.rstrip(b"\x00") for x in bytes(p).split(b"\x00\x00\x01")]  # 3- and 4-byte start codes
        nals = [x for x in nals if x]
        for x in nals:
            if x[0] & 0x1F == 7:
                sps = x
            elif x[0] & 0x1F == 8:
                pps = x
        units.append(nals)
    return units, sps, pps


class RtspServer:
    """Serves ``units`` (H.264 access units) in a loop at ``fps`` to every client, on 127.0.0.1.

    ``start()`` / ``stop()`` may be called again and again (the same port each time);
    ``stall()`` keeps the connections but stops sending (a camera that hangs)."""

    def __init__(self, units, sps: bytes, pps: bytes, *, fps: int = 25, size=(160, 120), port: int = 0):
        self.units, self.sps, self.pps, self.fps, self.size = units, sps, pps, fps, size
        self.port = port
        self.sessions = 0          # PLAY requests served, over all starts
        self._listener = None
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._running = threading.Event()
        self._plays = 0             # players started so far; those below _stalled_below send nothing
        self._stalled_below = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/live"

    def start(self) -> "RtspServer":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(4)
        s.settimeout(0.1)
        self.port = s.getsockname()[1]
        self._listener = s
        self._running.set()
        t = threading.Thread(target=self._accept, daemon=True, name="rtsp-accept")
        t.start()
        self._threads = [t]
        return self

    def stall(self) -> None:
        """The connections open now stay open but get nothing more; new ones are served."""
        self._stalled_below = self._plays

    def stop(self) -> None:
        """Every connection closed and nothing listening, as when a camera reboots."""
        self._running.clear()
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self._conns.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- the protocol -----------------------------------------------------------------------
    def _accept(self) -> None:
        while self._running.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            with self._lock:
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True, name="rtsp-client")
            t.start()
            self._threads.append(t)

    def _sdp(self) -> bytes:
        ps = base64.b64encode(self.sps).decode() + "," + base64.b64encode(self.pps).decode()
        profile = self.sps[1:4].hex()
        w, h = self.size
        return (f"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=arrcoc test\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
                f"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
                f"a=fmtp:96 packetization-mode=1;profile-level-id={profile};sprop-parameter-sets={ps}\r\n"
                f"a=framerate:{self.fps}\r\na=x-dimensions:{w},{h}\r\na=control:track1\r\n").encode()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        buf = b""
        player = None
        try:
            while self._running.is_set():
                try:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                except socket.timeout:
                    pass
                while buf:
                    if buf[:1] == b"$":  # the client's interleaved RTCP: read and ignore
                        if len(buf) < 4:
                            break
                        n = struct.unpack(">H", buf[2:4])[0]
                        if len(buf) < 4 + n:
                            break
                        buf = buf[4 + n:]
                        continue
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head, buf = buf[:end].decode(errors="replace"), buf[end + 4:]
                    lines = head.split("\r\n")
                    method = lines[0].split(" ")[0]
                    fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                    cseq = fields.get("cseq", "0")
                    extra, body = "", b""
                    if method == "OPTIONS":
                        extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n"
                    elif method == "DESCRIBE":
                        body = self._sdp()
                        extra = f"Content-Base: {self.url}/\r\nContent-Type: application/sdp\r\n"
                    elif method == "SETUP":
                        extra = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 4242;timeout=60\r\n"
                    elif method in ("PLAY", "GET_PARAMETER", "TEARDOWN"):
                        extra = "Session: 4242\r\n"
                    reply = f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body
                    with self._lock:
                        conn.sendall(reply)
                    if method == "PLAY" and player is None:
                        self.sessions += 1
                        self._plays += 1
                        player = threading.Thread(target=self._play, args=(conn, self._plays - 1), daemon=True,
                                                  name="rtsp-play")
                        player.start()
                    if method == "TEARDOWN":
                        return
        except OSError:
            return

    def _play(self, conn: socket.socket, number: int) -> None:
        seq, ssrc, i = 0, 0x1234ABCD, 0
        t0 = time.monotonic()
        while self._running.is_set():
            if number < self._stalled_below:
                time.sleep(0.01)
                continue
            ts = (i * 90000 // self.fps) & 0xFFFFFFFF
            nals = self.units[i % len(self.units)]
            if i % len(self.units) == 0:  # a keyframe's parameter sets first, as cameras repeat them
                nals = [self.sps, self.pps] + [n for n in nals if n[0] & 0x1F not in (7, 8)]
            out = b""
            for k, nal in enumerate(nals):
                last = k == len(nals) - 1
                for payload, marker in _rtp_payloads(nal, last):
                    header = struct.pack(">BBHII", 0x80, (0x80 if marker else 0) | 96, seq & 0xFFFF, ts, ssrc)
                    seq += 1
                    pkt = header + payload
                    out += b"$\x00" + struct.pack(">H", len(pkt)) + pkt
            try:
                with self._lock:
                    conn.sendall(out)
            except OSError:
                return
            i += 1
            delay = t0 + i / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def _rtp_payloads(nal: bytes, last_nal: bool, mtu: int = 1400):
    """RFC 6184 payloads of one NAL unit: single NAL unit packets, or FU-A fragments."""
    if len(nal) <= mtu:
        yield nal, last_nal
        return
    indicator = (nal[0] & 0xE0) | 28
    kind = nal[0] & 0x1F
    body = nal[1:]
    for off in range(0, len(body), mtu):
        start, end = off == 0, off + mtu >= len(body)
        fu = (0x80 if start else 0) | (0x40 if end else 0) | kind
        yield bytes([indicator, fu]) + body[off:off + mtu], last_nal and end
