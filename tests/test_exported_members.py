"""``citarion_host.__all__`` is complete, sorted, and every name in it exists (as in httpx)."""

from __future__ import annotations

import citarion_host


def test_all_names_exist() -> None:
    for name in citarion_host.__all__:
        assert hasattr(citarion_host, name), name


def test_all_is_sorted_and_unique() -> None:
    names = citarion_host.__all__
    assert len(set(names)) == len(names)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))


def test_every_public_import_is_exported() -> None:
    # ``name.isidentifier()``: pytest (9.2 and later) rewrites the package of its ``pytest11`` plugin
    # (``citarion_host``), which adds ``@py_builtins``: not a name anyone can import.
    public = {
        name
        for name, value in vars(citarion_host).items()
        if not name.startswith("_") and name.isidentifier() and not getattr(value, "__file__", None)
    }
    assert public <= set(citarion_host.__all__)
