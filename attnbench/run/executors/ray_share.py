"""A share of a Ray run: one backend's cases on one device, sent to one node as one task."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attnbench.case import Case
from attnbench.plugin.backend import name_of
from attnbench.plugin.catalog import BackendInfo
from attnbench.record import key


@dataclass
class Share:
    """One backend's cases on one device, sent to one node as one task."""

    backend: BackendInfo
    device: str
    items: list[tuple[str, Case]]
    attempt: int = 1
    node: dict[str, Any] | None = None
    failures: list[str] = field(default_factory=list)
    avoid: set[str] = field(default_factory=set)  # nodes it failed on
    left: dict[tuple[str, str, str, str], tuple[str, Case]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        name = name_of(self.backend)
        self.left = self.left or {key(s, c.id, c.device, name): (s, c) for s, c in self.items}

    @property
    def label(self) -> str:
        return node_label(self.node) if self.node else "an unknown node"


def node_label(node: dict[str, Any]) -> str:
    """`host:1a2b3c` (nodes of one machine share a host name; the id tells them apart)."""
    return f"{node.get('host')}:{str(node.get('node_id'))[:6]}"
