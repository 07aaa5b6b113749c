"""Reading imgress's server-sent events (`item`…, then `end`), for the clients and tests."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


def parse(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs from text/event-stream lines; stops after the `end` event.
    Pings (comment lines) and events without data are skipped."""
    name = None
    for line in lines:
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and name:
            yield name, json.loads(line.split(":", 1)[1])
            if name == "end":
                return
