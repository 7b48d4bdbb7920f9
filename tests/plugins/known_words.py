"""Test plugin: a transcriber whose words are known in advance (a tone's pitch picks the line that is "said").

Registered through the public hooks exactly as a third-party plugin would be; ``--model known-words``.
Each window's dominant frequency (nearest of SCRIPT's keys) picks its line; the words are spread evenly
from 10% to 90% of the window, so their times are known too.
"""

from __future__ import annotations

import numpy as np

from soundsift import SpokenWord, Transcriber, WindowTranscript, hookimpl

SCRIPT = {
    300: "客户投诉 说 要求 退款",
    450: "the customer is SHOUTING about a refund",
    600: "café crème and brûlée",
    750: "紧急求助 请 帮忙",
    900: "",  # nothing said
}


def pitch(window: np.ndarray, sample_rate: int) -> int:
    """The SCRIPT key nearest the window's strongest frequency."""
    spectrum = np.abs(np.fft.rfft(window.astype(np.float64)))
    peak = float(np.fft.rfftfreq(len(window), 1 / sample_rate)[int(np.argmax(spectrum[1:])) + 1])
    return min(SCRIPT, key=lambda f: abs(f - peak))


class KnownWords:
    model_id = "known-words"
    revision = "v1"
    alias = "known"
    sample_rate = 16_000
    language = None

    def transcribe(self, windows, sample_rate):
        out = []
        for w in windows:
            line = SCRIPT[pitch(np.asarray(w), sample_rate)]
            words = line.split()
            seconds = len(w) / sample_rate
            step = 0.8 * seconds / max(1, len(words))
            first = 0.1 * seconds
            out.append(
                WindowTranscript(
                    text=line,
                    words=[
                        SpokenWord(t, round(first + i * step, 4), round(first + (i + 1) * step, 4))
                        for i, t in enumerate(words)
                    ],
                )
            )
        return out


@hookimpl
def register_transcribers(register):
    register(Transcriber(name="known-words", load=lambda settings: [KnownWords()], description="test: known lines"))
