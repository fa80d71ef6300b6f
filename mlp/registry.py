"""Name -> class registries (activations, losses, ...): one class per kind of component.

A component is added by decorating its class with ``@REGISTRY.register("name")``; configs,
``--help``, error messages and tests discover it from :meth:`Registry.names`.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T", bound=type)

__all__ = ["Registry"]


class Registry(Generic[T]):
    """The registered classes of one kind (``kind`` names it in messages)."""

    def __init__(self, kind: str, plural: str | None = None):
        self.kind, self.plural = kind, plural or f"{kind}s"
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator adding a class under ``name`` (sets its ``name`` attribute)."""

        def deco(cls: T) -> T:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            cls.name = name
            self._classes[name] = cls
            return cls

        return deco

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._classes)

    def get(self, name: str) -> T:
        """The class registered as ``name``; ValueError listing the valid names if none."""
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; valid {self.plural}: "
                             f"{', '.join(self.names())}") from None
