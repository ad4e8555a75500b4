"""A progress bar (tqdm) that can be switched off (tests, logs) without changing the loop that drives it."""

from __future__ import annotations


class _NoBar:
    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, **values) -> None: ...

    def close(self) -> None: ...


def progress_bar(total: int, enabled: bool, unit: str, desc: str):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc)
