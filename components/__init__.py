"""The composition: stream specs in, Dagster definitions out (above assets/, sensors/, resources/).

`FreshlakeStreams` is the Component type for `defs.yaml` users (`dg list components` finds it
through the `dagster_dg_cli.registry_modules` entry point).
"""

from freshlake.components.component import FreshlakeStreams

__all__ = ["FreshlakeStreams"]
