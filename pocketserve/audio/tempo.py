"""Change the tempo of speech without changing its pitch (FFmpeg's atempo, through PyAV).

Used only where a voice model cannot go faster by itself: Piper's length scale stops
shortening speech at about 2x, and OpenAI's `speed` goes to 4x.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any


def stretch(pcm: bytes, rate: int, tempo: float) -> bytes:
    """s16le mono `pcm` played `tempo` times faster (0.5 to 100), same pitch and rate."""
    if abs(tempo - 1.0) < 1e-3 or not pcm:
        return pcm
    import av
    import av.filter
    import numpy as np

    graph: Any = av.filter.Graph()
    source = graph.add_abuffer(sample_rate=rate, format="s16", layout="mono",
                               time_base=f"1/{rate}")
    atempo = graph.add("atempo", f"{tempo:.6f}")
    sink = graph.add("abuffersink")
    source.link_to(atempo)
    atempo.link_to(sink)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, "<i2").reshape(1, -1), format="s16",
                                       layout="mono")
    frame.sample_rate = rate
    frame.pts = 0
    frame.time_base = Fraction(1, rate)
    graph.push(frame)
    graph.push(None)  # end of stream: atempo flushes what it holds
    out: list[bytes] = []
    while True:
        try:
            result = graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            break
        out.append(result.to_ndarray().reshape(-1).astype("<i2").tobytes())
    return b"".join(out)
