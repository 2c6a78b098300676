"""The Backend base class, the name each backend registered under, and Unsupported."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attnbench.case import Case
from attnbench.plugin.capabilities import (
    DEVICE_FIELDS,
    Capabilities,
    capability_reasons,
    framework_reasons,
)
from attnbench.plugin.inputs import (
    Inputs,
    alibi_matrix,
    empty_row_mask,
    visibility_matrix,
    visible_mask,
)
from attnbench.plugin.probes import (
    device_failure,
    first_line,
    import_failure,
    parse_version,
    version_failure,
)

# the plugin API as plugins import it (from here or from attnbench), wherever it is defined
__all__ = [
    "DEVICE_FIELDS", "Backend", "Capabilities", "Inputs", "Unsupported", "alibi_matrix",
    "capability_reasons", "device_failure", "empty_row_mask", "first_line", "import_failure",
    "name_of", "parse_version", "pin_name", "version_failure", "visibility_matrix",
    "visible_mask",
]


class Backend:
    """Base class of every attention backend; subclass it and override prepare()."""

    name: str = ""
    framework: str = "numpy"
    capabilities: Capabilities = Capabilities()
    description: str = ""
    requires: tuple[str, ...] = ()

    def availability(self) -> list[str]:
        """Reasons this backend cannot run at all here (missing libraries, too old versions)."""
        reasons = [import_failure(m) for m in self.requires]
        if self.framework == "torch":
            reasons.insert(0, import_failure("torch"))
        reasons += [version_failure(m, v) for m, v in self.capabilities.min_versions.items()]
        return [r for r in dict.fromkeys(reasons) if r]

    def device_reasons(self, device: str) -> list[str]:
        """Reasons this backend cannot run on a device here."""
        caps = self.capabilities
        if device not in caps.devices:
            return [f"{name_of(self)} runs only on {', '.join(caps.devices)}, not {device}"]
        failure = device_failure(device)
        return [failure] if failure else []

    def unsupported(self, case: Case) -> list[str]:
        """Why this case cannot run here, as sentences; [] means supported."""
        reasons = self.availability() + self.device_reasons(case.device)
        reasons += capability_reasons(name_of(self), self.capabilities, case)
        return reasons + framework_reasons(name_of(self), self.framework, case)

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        """Convert layouts and allocate now; return a zero-argument callable computing out."""
        raise NotImplementedError(f"{type(self).__name__} must implement prepare()")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


_PINNED: dict[int, tuple[Backend, str]] = {}  # id(backend) -> (backend, name at registration)


def pin_name(backend: Backend, name: str) -> None:
    """Fix the name a backend registered under: records use it, whatever .name says later."""
    _PINNED[id(backend)] = (backend, name)


def name_of(backend: Backend) -> str:
    """The name a backend registered under (a property or a reassigned attribute cannot change
    it, so no backend writes records under another's name); its .name if never registered."""
    pinned = _PINNED.get(id(backend))
    return pinned[1] if pinned is not None and pinned[0] is backend else str(backend.name)




class Unsupported(Exception):
    """Raised by a backend (in prepare or its callable) when it finds it cannot run a case.

    The runner records the case as `unsupported` with this message as the reason.
    """
