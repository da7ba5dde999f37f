"""A small progress bar on stderr (opt-in; no dependency)."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Progress of ``total`` units of work, drawn on stderr at most every ``interval`` seconds.

    Disabled bars cost one comparison per update. Used as ``bar.update(m)`` then
    ``bar.close()``, or as a context manager. Each redraw pads the line to the longest one
    drawn, so that a shorter line leaves no characters of the one before; on a stream that is
    not a terminal (a log file) only the final line is written.
    """

    def __init__(self, total: int, desc: str, *, enabled: bool = True, interval: float = 0.25,
                 stream=None, unit: str = "rows"):
        self.total = max(0, int(total))
        self.desc = desc
        self.enabled = bool(enabled)
        self.interval = interval
        self.stream = stream if stream is not None else sys.stderr
        self.unit = unit
        self.done = 0
        self._start = time.perf_counter()
        self._last = 0.0
        self._drawn = -1  # the count last drawn
        self._closed = False
        self._width = 0  # the longest line drawn
        isatty = getattr(self.stream, "isatty", None)
        self._live = bool(isatty and isatty())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, amount: int = 1) -> None:
        self.done += int(amount)
        if not self.enabled or not self._live:
            return
        now = time.perf_counter()
        if now - self._last >= self.interval or self.done >= self.total:
            self._last = now
            self._draw(now)

    def _draw(self, now: float, final: bool = False) -> None:
        self._drawn = self.done
        elapsed = now - self._start
        frac = self.done / self.total if self.total else 1.0
        width = 24
        filled = int(round(width * min(1.0, frac)))
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        eta_s = f" eta {eta:5.1f}s" if frac < 1 and eta == eta and not final else ""
        line = (f"{self.desc}: [{'#' * filled}{'.' * (width - filled)}] {self.done}/"
                f"{self.total} {self.unit} {elapsed:5.1f}s{eta_s}")
        self._width = max(self._width, len(line))
        self.stream.write(("\r" if self._live else "") + line.ljust(self._width))
        self.stream.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            if self._drawn != self.done or not self._live or self.done < self.total:
                self._draw(time.perf_counter(), final=True)  # no eta: the work is over
            self.stream.write("\n")
            self.stream.flush()
