"""Code that runs once a module has been imported (and not before): post-import hooks.

A :class:`PostImportFinder` on ``sys.meta_path`` finds nothing itself: for the
module names it matches, it asks the finders after it and hands the module a
loader that runs the module as its own loader would, then calls back with the
module. So MLTrack can wrap ``Figure.savefig`` or scikit-learn's ``fit`` in the
very cell that first imports them, without importing either itself.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any


class _Loader(importlib.abc.Loader):
    """The module's own loader, and a look at the module once it has run."""

    def __init__(self, loader: Any, loaded: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._loaded = loaded

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        with contextlib.suppress(Exception):  # the user's import succeeds whatever the callback does
            self._loaded(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, is_package, resources…
        return getattr(self._loader, name)


class PostImportFinder(importlib.abc.MetaPathFinder):
    """Calls *loaded* with each module whose name *match* accepts, once the module has run."""

    def __init__(self, match: Callable[[str], bool], loaded: Callable[[ModuleType], None]) -> None:
        self._match = match
        self._loaded = loaded
        self._local = threading.local()

    def install(self) -> PostImportFinder:
        """First on ``sys.meta_path``; returns itself."""
        sys.meta_path.insert(0, self)
        return self

    def uninstall(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if getattr(self._local, "busy", False) or not self._match(fullname):
            return None
        self._local.busy = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._local.busy = False
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader, self._loaded)
        return spec


__all__ = ["PostImportFinder"]
