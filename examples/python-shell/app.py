"""The `shell` backend in Python: the `adapter` interface's functions (the session resource is in
adapter.py, where componentize-py looks for it). Built with componentize-py from the repository's
wit/ (`cargo xtask plugins --polyglot`)."""

from wit_world import exports
from wit_world.imports import types


class Adapter(exports.Adapter):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="python-shell",
            version="0.1.0",
            description="The shell backend, in Python.",
        )
