"""The served model: resolved from a registry alias, reloaded when the alias moves (no restart)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from replyloop import registry
from replyloop.modeling import ReplyGenerator
from replyloop.settings import Settings

log = logging.getLogger(__name__)


class NoModelError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoadedModel:
    version: str
    generator: ReplyGenerator


class ModelStore:
    """Holds the model behind an alias; `refresh()` swaps in a new version atomically when the alias moved."""

    def __init__(self, settings: Settings, alias: str = "champion"):
        self.settings = settings
        self.alias = alias
        self._current: LoadedModel | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def load(self) -> LoadedModel:
        version = registry.alias_version(self.settings, self.alias)
        if version is None:
            raise NoModelError(f"{self.settings.model_name} has no @{self.alias} version in "
                               f"{self.settings.tracking_uri}; run the loop (make demo) or `replyloop promote`")
        if self._current is not None and self._current.version == version:
            return self._current
        from replyloop.registry import load_version

        log.info("loading %s@%s = v%s", self.settings.model_name, self.alias, version)
        loaded = LoadedModel(version, load_version(self.settings, version))
        with self._lock:
            self._current = loaded
        return loaded

    def refresh(self) -> bool:
        """Reload if the alias points elsewhere now; True when the served version changed."""
        before = self._current.version if self._current else None
        try:
            after = self.load().version
        except NoModelError as exc:
            log.warning("%s", exc)
            return False
        if after != before:
            log.info("alias @%s moved: v%s -> v%s", self.alias, before, after)
        return after != before
