"""What the connected containerd can do: the one place that decides.

Decisions come from the daemon's version and its plugin list (one
``Version`` and one ``Introspection.Plugins`` call, cached per client). Code
elsewhere asks ``client.features().has("transfer")`` or calls
``require("transfer")``, which raises :class:`NotSupportedError` naming the
version needed; nothing else in the SDK compares version numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from containerd_client.errors import NotSupportedError

__all__ = ["FEATURES", "Feature", "Features"]


@attrs.frozen
class Feature:
    """A capability, the version that brought it, and how to recognise it."""

    name: str
    description: str
    since: str
    check: Callable[[Features], bool] = attrs.field(repr=False, eq=False)


def _plugin(kind: str, plugin_id: str) -> Callable[[Features], bool]:
    return lambda f: (kind, plugin_id) in f.plugins


def _at_least(*version: int) -> Callable[[Features], bool]:
    return lambda f: f.version >= version


def _all(*checks: Callable[[Features], bool]) -> Callable[[Features], bool]:
    return lambda f: all(c(f) for c in checks)


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature(
            "transfer",
            "image transfers (pull, import, export) done by the daemon",
            "1.7",
            _all(_plugin("io.containerd.grpc.v1", "transfer"), _plugin("io.containerd.grpc.v1", "streaming")),
        ),
        Feature(
            "transfer-pull-plain-http",
            "daemon-side pull from a plain-HTTP registry",
            "2.0",
            _all(_plugin("io.containerd.grpc.v1", "transfer"), _at_least(2, 0)),
        ),
        Feature(
            "streaming", "the generic streaming service", "1.7", _plugin("io.containerd.grpc.v1", "streaming")
        ),
        Feature("plugin-info", "Introspection.PluginInfo", "2.0", _at_least(2, 0)),
        Feature("server-pid", "daemon pid in Introspection.Server", "1.7", _at_least(1, 7)),
        Feature("deprecations", "deprecation warnings in Introspection.Server", "1.7", _at_least(1, 7)),
        Feature("content-create-events", "/content/create events", "2.1", _at_least(2, 1)),
        Feature(
            "runtime-v1",
            "the removed io.containerd.runtime.v1.linux shim",
            "1.0 (removed in 2.0)",
            lambda f: f.version < (2, 0),
        ),
        Feature(
            "checkpoint",
            "task checkpoint and restore (needs criu on the daemon's PATH)",
            "1.0",
            lambda f: True,
        ),
    )
}


@attrs.frozen
class Features:
    """What one daemon offers.

    Attributes:
        version: The daemon's numeric version, e.g. ``(1, 6, 20)``.
        version_string: The version as the daemon reports it.
        plugins: ``(type, id)`` of every plugin that loaded without error.
    """

    version: tuple[int, ...]
    version_string: str
    plugins: frozenset[tuple[str, str]]

    @classmethod
    def build(
        cls, version: tuple[int, ...], version_string: str, plugins: Iterable[tuple[str, str]]
    ) -> Features:
        """Make a value from raw facts (the client does this from two RPCs)."""
        return cls(tuple(version), version_string, frozenset(plugins))

    def has(self, name: str) -> bool:
        """Whether the daemon offers feature ``name`` (see :data:`FEATURES`).

        Raises:
            KeyError: ``name`` is not a feature this SDK knows.
        """
        return FEATURES[name].check(self)

    def require(self, name: str) -> None:
        """Raise unless the daemon offers feature ``name``.

        Raises:
            NotSupportedError: It does not; the message names the version needed.
        """
        feature = FEATURES[name]
        if not feature.check(self):
            raise NotSupportedError(feature.description, feature.since, self.version_string)

    def table(self) -> dict[str, bool]:
        """Every known feature and whether this daemon has it."""
        return {name: f.check(self) for name, f in FEATURES.items()}
