"""The served model: the version behind a registry alias, swapped without a restart.

`refresh()` (called every `alias_poll_seconds`) looks the alias up; a new version is loaded beside the
one serving, then swapped in by one reference assignment. Requests hold the `LoadedModel` they were
admitted with, so in-flight requests finish on the old version. The last `serve_keep_versions` versions
stay loaded: rolling back to the previous champion is a pointer swap at the next poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from replyloop import registry
from replyloop.serving.engine import Engine, load_engine
from replyloop.settings import Settings

log = logging.getLogger(__name__)


class NoModelError(RuntimeError):
    """The alias names no version, or it cannot be loaded (`ModelStore.load`)."""


@dataclass(frozen=True)
class LoadedModel:
    version: str
    engine: Engine
    loaded_at: float = field(default_factory=time.time)

    @property
    def generator(self) -> LoadedModel:
        """Kept for callers of the first API (`loaded.generator.reply([...])`)."""
        return self

    def reply(self, conversations: list) -> list[str]:
        turns = [[{"role": "customer", "text": c}] if isinstance(c, str) else c for c in conversations]
        return [g.text for g in self.engine.generate(turns)]


class ModelStore:
    def __init__(self, settings: Settings, alias: str | None = None, loader=load_engine):
        self.settings = settings
        self.alias = alias or settings.serve_alias
        self.loader = loader
        self._current: LoadedModel | None = None
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()  # one refresh at a time
        self.not_ready = f"looking up @{self.alias} in the registry"
        self._failed: tuple[str, float] | None = None  # (version, when): not retried at every poll

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def load(self) -> LoadedModel:
        """Serve the alias's version now (one refresh); NoModelError says why when nothing is served."""
        self.refresh()
        if self._current is None:
            raise NoModelError(self.not_ready)
        return self._current

    def refresh(self) -> bool:
        """Serve the version the alias names now; True when the served version changed."""
        with self._lock:
            try:
                version = registry.alias_version(self.settings, self.alias)
            except Exception as exc:  # an unreachable or failing registry is not "no champion"
                if self._current is None:
                    self.not_ready = f"the model registry did not answer ({type(exc).__name__}); retrying"
                raise
            if version is None:
                if self._current is None:
                    self.not_ready = (f"model {self.settings.model_name!r} has no @{self.alias} version yet "
                                      "(run the loop, or `replyloop promote VERSION`)")
                else:
                    log.warning("@%s is unset; still serving v%s", self.alias, self._current.version)
                return False
            if self._current is not None and self._current.version == version:
                return False
            if self._failed and self._failed[0] == version and \
                    time.monotonic() - self._failed[1] < 10 * self.settings.alias_poll_seconds:
                return False
            loaded = self._loaded.get(version) or self._load(version)
            if loaded is None:
                return False
            before = self._current.version if self._current else None
            self._loaded.move_to_end(version)
            self._current = loaded  # the swap: one reference assignment
            self.not_ready = None
            log.info("@%s: serving v%s (was v%s) on %s", self.alias, version, before, loaded.engine.name)
            return True

    def _load(self, version: str) -> LoadedModel | None:
        if self._current is None:
            self.not_ready = f"loading @{self.alias} = version {version}"
        started = time.monotonic()
        try:
            engine = self.loader(self.settings, version)
        except Exception as exc:  # keep serving what is loaded; the full message goes to the server log only
            log.error("cannot load version %s: %s", version, exc)
            self._failed = (version, time.monotonic())
            if self._current is None:
                self.not_ready = f"version {version} of @{self.alias} could not be loaded ({type(exc).__name__})"
            return None
        log.info("loaded v%s on %s/%s in %.1fs", version, engine.name, engine.device, time.monotonic() - started)
        loaded = self._loaded[version] = LoadedModel(version, engine)
        while len(self._loaded) > self.settings.serve_keep_versions:
            self._loaded.popitem(last=False)  # requests still holding it finish; then it is freed
        return loaded
