"""Application registry: ``@register_app("name")`` maps an app name to its `App` class.

Apps are imported lazily (TensorFlow start-up is slow), from the modules listed in ``_MODULES``;
a new app is one folder plus one line here.
"""

from __future__ import annotations

import importlib
import importlib.util

_MODULES = {
    "translate": "seqapps.translate.app",
    "sentiment": "seqapps.sentiment.app",
    "speech": "seqapps.speech.app",
    "forecast": "seqapps.forecast.app",
}
_APPS: dict[str, type] = {}


def register_app(name: str):
    def decorator(cls):
        cls.name = name
        _APPS[name] = cls
        return cls

    return decorator


def available() -> list[str]:
    names = set(_APPS)
    for name, module in _MODULES.items():
        if importlib.util.find_spec(module.rsplit(".", 1)[0]) is not None:
            names.add(name)
    return sorted(names)


def get_app(name: str):
    """An instance of the app called ``name``; a clear error lists the known apps."""
    if name not in _APPS and name in _MODULES:
        try:
            importlib.import_module(_MODULES[name])
        except ModuleNotFoundError as exc:
            if not exc.name or not exc.name.startswith(_MODULES[name].rsplit(".", 1)[0]):
                raise
    if name not in _APPS:
        raise KeyError(f"unknown app {name!r}; available apps: {', '.join(available())}")
    return _APPS[name]()
