"""Named exceptions of the engine and the plugin contract."""

from __future__ import annotations

from dataclasses import dataclass


class TwinLensError(Exception):
    """Base of every error TwinLens raises on purpose."""


class PluginError(TwinLensError):
    """A plugin is broken: it failed to import or its declarations are invalid."""

    def __init__(self, plugin: str, reason: str):
        super().__init__(f"plugin {plugin!r}: {reason}")
        self.plugin = plugin
        self.reason = reason


class UnknownPluginError(TwinLensError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"unknown plugin {name!r}; registered: {', '.join(known) or 'none'}")
        self.name = name


class InputError(TwinLensError):
    """One input (image, text, metadata) cannot be used; `field` names which."""

    def __init__(self, field: str, reason: str, *, status: int = 422):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        # HTTP status the API should answer with (415 for an unsupported format).
        self.status = status


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


class DatasetError(TwinLensError):
    """A data set has bad rows; every bad row is listed, not only the first."""

    def __init__(self, path: str, rows: list[RowError]):
        self.path = path
        self.rows = rows
        listing = "\n".join(f"  {row}" for row in rows[:200])
        more = f"\n  ... and {len(rows) - 200} more" if len(rows) > 200 else ""
        super().__init__(
            f"{path}: {len(rows)} bad row(s) (use --skip-bad-rows to continue without them):\n"
            f"{listing}{more}"
        )


class BundleError(TwinLensError):
    """A model bundle is missing, malformed, tampered with or unsafe to load."""


class WeightsUnavailableError(TwinLensError):
    """Pretrained weights were asked for but are not on this machine (and we never download)."""
