"""Immutable collections that grow cheaply: a pool folds an invoice without copying
its maps (a long history would otherwise cost quadratic time)."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, ValuesView
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, TypeVar, overload

K = TypeVar("K")
S = TypeVar("S")
V = TypeVar("V")
T = TypeVar("T")
_MISSING: Any = object()


# --- immutable collections that grow cheaply -------------------------------------------
#
# A pool folds one event per invoice: copying a set of every invoice reference on each
# one would make folding a pool quadratic. These keep their items in levels of doubling
# size (a binary counter), so that an addition copies O(log n) items amortised and the
# earlier state stays valid.


@dataclass(frozen=True, eq=False)
class RefSet(AbstractSet[str]):
    """An immutable set of references (invoice, purchase order, timesheet entry ids)."""

    levels: tuple[frozenset[str], ...] = ()

    def __contains__(self, item: object) -> bool:
        for level in self.levels:  # noqa: SIM110 - any() and its generator cost twice as much
            if item in level:
                return True
        return False

    def __iter__(self) -> Iterator[str]:
        for level in self.levels:
            yield from level

    def __len__(self) -> int:
        return sum(len(level) for level in self.levels)

    def add(self, item: str) -> RefSet:
        if item in self:
            return self
        carry, levels = frozenset((item,)), list(self.levels)
        for index, level in enumerate(levels):
            if not level:
                levels[index] = carry
                return RefSet(tuple(levels))
            carry, levels[index] = level | carry, frozenset()
        return RefSet((*levels, carry))


#: A removed key's value in the level that removes it: it hides the key's earlier values.
_GONE: Any = object()


@dataclass(frozen=True, eq=False)
class LayeredMap(Mapping[K, V]):
    """An immutable mapping; a later value for a key replaces the earlier one. It iterates
    in a dict's order (first insertion), except that a key removed and set again may keep
    its first place."""

    #: Newest first: a lookup stops at the first level holding the key.
    levels: tuple[Mapping[K, V], ...] = ()
    #: How many removals its levels may hold (0: none, the fast paths).
    removed: int = 0

    def __getitem__(self, key: K) -> V:
        for level in self.levels:
            if key in level:
                value = level[key]
                if value is _GONE:
                    break
                return value
        raise KeyError(key)

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, /, default: V | T) -> V | T: ...
    def get(self, key: K, /, default: object = None) -> object:
        """Mapping.get without its KeyError round trip: called several times per fold."""
        for level in self.levels:
            found = level.get(key, _MISSING)
            if found is not _MISSING:
                return default if found is _GONE else found
        return default

    def __contains__(self, key: object) -> bool:
        for level in self.levels:
            if key in level:
                return level[key] is not _GONE  # type: ignore[index]
        return False

    def _merged(self) -> dict[K, V]:
        merged: dict[K, V] = {}
        if not self.removed:
            for level in reversed(self.levels):
                merged.update(level)
            return merged
        for level in reversed(self.levels):
            for key, value in level.items():
                if value is _GONE:
                    merged.pop(key, None)
                else:
                    merged[key] = value
        return merged

    def __iter__(self) -> Iterator[K]:
        return iter(self._merged())

    def items(self) -> ItemsView[K, V]:
        """Merged once: Mapping's would look every key up again level by level."""
        return self._merged().items()

    def values(self) -> ValuesView[V]:
        return self._merged().values()

    def __len__(self) -> int:
        return len(self._merged())

    def set(self, key: K, value: V) -> LayeredMap[K, V]:
        return self._with(key, value, self.removed)

    def remove(self, key: K) -> LayeredMap[K, V]:
        """Without `key` (the same map when it has none)."""
        if key not in self:
            return self
        return self._with(key, _GONE, self.removed + 1)

    def _with(self, key: K, value: V, removed: int) -> LayeredMap[K, V]:
        carry: Mapping[K, V] = {key: value}
        levels = list(self.levels)
        for index, level in enumerate(levels):
            if not level:
                levels[index] = carry
                return LayeredMap(tuple(levels), removed)
            carry, levels[index] = {**level, **carry}, {}
        return LayeredMap((*levels, carry), removed)


def with_changes(state: S, **changes: Any) -> S:
    """A copy of a frozen dataclass with some fields changed: `dataclasses.replace` without
    running `__init__` again, which dominated folding a pool's invoices one by one."""
    changed: S = object.__new__(type(state))
    changed.__dict__.update(state.__dict__, **changes)
    return changed
