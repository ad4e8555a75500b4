"""The vocabulary's categories as the protos' Category enum, mapped here once (a test checks both hold the same).

Light on purpose (the vocabulary, the errors and the generated common messages only), so the orchestrator can
use it without the stage runtime's heavier modules.
"""

from __future__ import annotations

from vton.runtime.errors import InvalidInput
from vton.runtime.vocab import CATEGORIES, Category
from vton.v1 import common_pb2

_CATEGORY_ENUMS: dict[Category, common_pb2.Category] = {
    Category.UPPER_BODY: common_pb2.CATEGORY_UPPER_BODY,
    Category.LOWER_BODY: common_pb2.CATEGORY_LOWER_BODY,
    Category.DRESSES: common_pb2.CATEGORY_DRESSES,
}
_CATEGORIES = {value: category for category, value in _CATEGORY_ENUMS.items()}


def category_enum(category: str) -> common_pb2.Category:
    """The proto enum value of a category name (what a client puts in TryOnOptions.category)."""
    if category not in CATEGORIES:
        raise InvalidInput(f"unknown category {category!r}; choose one of: {', '.join(CATEGORIES)}")
    return _CATEGORY_ENUMS[Category(category)]


def category_of(value: int, what: str = "category") -> Category:
    """The category a proto enum value names; unset or unknown is InvalidInput naming the choices."""
    if value not in _CATEGORIES:
        raise InvalidInput(f"{what} must be one of {', '.join(CATEGORIES)}")
    return _CATEGORIES[value]  # type: ignore[index]
