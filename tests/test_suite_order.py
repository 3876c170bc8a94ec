"""The suite's own order: the tests marked `slow` run first (tests/conftest.py), so that
`make test`'s workers end together instead of one idling while the other runs the last
long test."""

from __future__ import annotations

from conftest import pytest_collection_modifyitems


class Item:
    def __init__(self, name: str, slow: bool) -> None:
        self.name, self.slow = name, slow

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "slow" and self.slow else None


def test_slow_tests_come_first_and_the_rest_keep_their_order():
    items = [Item("a", False), Item("b", True), Item("c", False), Item("d", True), Item("e", False)]
    pytest_collection_modifyitems(None, items)
    assert [i.name for i in items] == ["b", "d", "a", "c", "e"]
