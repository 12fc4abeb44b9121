"""The one test clock: time is an input the test moves, never a wait."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


class ManualClock:
    """Answers ``now`` until the test moves it: a monotonic reading in seconds (the default) or
    a wall-clock datetime, whichever the code under test reads."""

    def __init__(self, now: Any = 1000.0) -> None:
        self.now = now

    def __call__(self) -> Any:
        return self.now

    def advance(self, seconds: float) -> None:
        step = timedelta(seconds=seconds) if isinstance(self.now, datetime) else seconds
        self.now = self.now + step
