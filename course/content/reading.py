"""What the article readers share with the article they build: the error every reader raises and
the read-only front matter. Its own module, below course.content.article and the readers, so that
neither imports the other both ways."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

MetaValue = str | tuple[str, ...]


class ArticleError(ValueError):
    """The article cannot be parsed; the message names the source and, where known, the line."""


class FrozenMeta(Mapping[str, MetaValue]):
    """Read-only front matter that, unlike ``types.MappingProxyType``, is hashable and picklable.

    An :class:`Article` is a frozen value that may be hashed, copied or pickled (e.g. to hand it to a
    worker), so its metadata has to be all three. Values are text, or tuples of text for YAML lists.
    """

    __slots__ = ("_pairs",)

    def __init__(self, pairs: Mapping[str, MetaValue] | None = None) -> None:
        self._pairs: tuple[tuple[str, MetaValue], ...] = tuple((pairs or {}).items())

    def __getitem__(self, key: str) -> MetaValue:
        for pair_key, value in self._pairs:
            if pair_key == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __hash__(self) -> int:
        return hash(frozenset(self._pairs))

    def __reduce__(self) -> tuple[type[FrozenMeta], tuple[dict[str, MetaValue]]]:
        return (FrozenMeta, (dict(self._pairs),))

    def __repr__(self) -> str:
        return f"FrozenMeta({dict(self._pairs)!r})"
