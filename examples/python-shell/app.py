"""`python-shell`: an aac-host backend adapter in Python. This module implements the `adapter`
interface's functions; the session resource is in adapter.py, where componentize-py looks for it."""

from wit_world import exports
from wit_world.imports import types


class Adapter(exports.Adapter):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="python-shell",
            version="0.1.0",
            description="Runs each prompt as a shell script (Python).",
        )
