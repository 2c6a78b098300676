"""The check gate: whether a check's records pass (each verified, none failed), and why not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from attnbench.record import CHECK_FAILED, VERIFIED


@dataclass
class GateVerdict:
    """Whether the check passed, and the sentence that says so."""

    passed: bool
    message: str


def check_gate(records: list[dict[str, Any]], require_deterministic: bool, repeat: int,
               plugin_failures: Sequence[tuple[str, str]] = ()) -> GateVerdict:
    """Fails when a plugin named with --plugin failed (its import or a hook raised), a record
    failed, none was verified, or (require_deterministic) a record's repeated calls were not
    bitwise identical or were not checked."""
    if plugin_failures:
        plugin, reason = plugin_failures[0]
        more = f" (and {len(plugin_failures) - 1} more)" if len(plugin_failures) > 1 else ""
        return GateVerdict(False, f"check failed: the plugin {plugin} failed{more}: {reason}")
    failed = [r for r in records if r["status"] in CHECK_FAILED]
    verified = [r for r in records if r["status"] in VERIFIED]
    if failed:
        return GateVerdict(False, f"check failed: {len(failed)} record(s) not ok "
                                  f"({status_counts(failed)})")
    if require_deterministic:
        from attnbench.verify.determinism import nondeterministic

        if unequal := nondeterministic(records):
            return GateVerdict(False, f"check failed: {len(unequal)} record(s) not bitwise "
                                      f"identical across {repeat} calls (--require-deterministic)")
        if unchecked := [r for r in verified if not isinstance(r.get("determinism"), dict)]:
            return GateVerdict(False, f"check failed: {len(unchecked)} verified record(s) "
                                      "report no repeat check (--require-deterministic)")
    if not verified:
        why = next((r["reasons"][0] for r in records if r.get("reasons")), "no records")
        return GateVerdict(False, "check failed: no record was verified against the oracle "
                                  f"({status_counts(records)}; e.g. {why})")
    return GateVerdict(True, f"check passed: {len(verified)} record(s) verified "
                             f"({status_counts(records)})")


def status_counts(records: list[dict[str, Any]]) -> str:
    """'3 ok, 1 unsupported': how many records have each status."""
    counts: dict[str, int] = {}
    for r in records:
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items()) or "no records"
