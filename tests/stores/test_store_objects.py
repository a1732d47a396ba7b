"""Named, versioned workspace objects (environments): every store keeps versions, latest first on get."""

from __future__ import annotations

import threading
import uuid

import pytest

from expboard.errors import NotFoundError, ValidationError
from expboard.stores.base import Store


def test_versions_get_and_list(store: Store) -> None:
    kind = "environment"
    name = f"env-{uuid.uuid4().hex[:8]}.v1"
    first = store.register_object(kind, name, {"python": {"pip": ["numpy"]}})
    second = store.register_object(kind, name, {"python": {"pip": ["numpy", "scipy"]}})
    assert (first.version, second.version) == (1, 2)
    assert store.get_object(kind, name).body == {"python": {"pip": ["numpy", "scipy"]}}
    assert store.get_object(kind, name, version=1).body == {"python": {"pip": ["numpy"]}}
    other = f"other-{uuid.uuid4().hex[:8]}"
    store.register_object(kind, other, {"x": 1})
    mine = [(o.name, o.version) for o in store.list_objects(kind) if o.name in (name, other)]
    assert mine == sorted([(name, 1), (name, 2), (other, 1)])
    assert [o.version for o in store.list_objects(kind, name)] == [1, 2]
    with pytest.raises(NotFoundError, match="version 3"):
        store.get_object(kind, name, version=3)
    with pytest.raises(NotFoundError, match="no environment 'missing-"):
        store.get_object(kind, f"missing-{uuid.uuid4().hex[:8]}")


def test_concurrent_registrations_get_distinct_versions(store: Store) -> None:
    name = f"race-{uuid.uuid4().hex[:8]}"
    versions: list[int] = []
    errors: list[BaseException] = []

    def register(i: int) -> None:
        try:
            versions.append(store.register_object("environment", name, {"i": i}).version)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        (".hidden", {}, "invalid name"),
        ("a/b", {}, "invalid name"),
        ("ok", {"x": float("nan")}, "not plain JSON"),
        ("ok", {"x": "y" * (1024 * 1024 + 1)}, "over 1 MiB"),
    ],
)
def test_bad_input_is_refused(store: Store, name: str, body: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        store.register_object("environment", name, body)
