"""Names that look like a misspelled setting: ``DATABSE_URL``, ``SECRETKEY``, ``log_level``.

The settings are read by their exact names, so a misspelled one is ignored and its default (or a
"missing" error about the real name) takes its place without a word. A name is taken for a
misspelling of a setting when, compared in upper case, it is one or two edits away (one for a
setting of up to seven characters, where two edits reach unrelated names such as ``PGPORT`` for
``PORT``), or the same once underscores and hyphens are dropped. An edit is an insertion, a
deletion, a substitution or a swap of two neighbours.
"""

from __future__ import annotations

from collections.abc import Iterable

_SHORT_NAME = 7


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, start=1):
            cost = 0 if char_a == char_b else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def _squashed(name: str) -> str:
    return name.upper().replace("_", "").replace("-", "")


def probable_setting(name: str, settings: Iterable[str]) -> str | None:
    """The setting ``name`` probably means, or None when it is a setting or unlike every one."""
    settings = list(settings)
    if name in settings:
        return None
    upper, squashed = name.upper(), _squashed(name)
    best: tuple[int, str] | None = None
    for setting in settings:
        limit = 1 if len(setting) <= _SHORT_NAME else 2
        distance = 0 if squashed == _squashed(setting) else edit_distance(upper, setting)
        if distance <= limit and (best is None or distance < best[0]):
            best = (distance, setting)
    return best[1] if best else None


def near_misses(names: Iterable[str], settings: Iterable[str]) -> list[tuple[str, str]]:
    """``(name, setting it probably means)`` for each of ``names`` that looks like a misspelled setting."""
    settings = list(settings)
    found = [(name, probable_setting(name, settings)) for name in sorted(set(names))]
    return [(name, meant) for name, meant in found if meant is not None]
