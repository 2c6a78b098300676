"""The worker protocol as the parent speaks it: JSON lines out, checked reply lines back."""

from __future__ import annotations

import json
import os
from typing import Any


def write_message(fd: int, message: dict[str, Any]) -> None:
    """Write one message as a JSON line, all of it (OSError when the worker's end is closed)."""
    _write_all(fd, (json.dumps(message) + "\n").encode())


def parse_reply(line: bytes, token: str, task: int | None) -> tuple[dict[str, Any], str | None]:
    """The reply line as a dict, and why it is not this worker's reply to the task (or None)."""
    try:
        data = json.loads(line)
    except ValueError:
        return {}, f"it sent a line that is not JSON: {show(line)}"
    if not isinstance(data, dict) or data.get("token") != token:
        return {}, ("it sent a line without this worker's token (written by something else in "
                    f"the worker?): {show(data)}")
    if data.get("task") != task:
        return {}, f"it answered task {data.get('task')!r}, not task {task!r}"
    return data, None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def show(value: Any) -> str:
    """A line (bytes) or a value as text for a message, cut to 200 characters."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else repr(value)
    return text[:200] + ("..." if len(text) > 200 else "")
