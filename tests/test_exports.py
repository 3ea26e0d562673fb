"""Every package's ``__all__`` is its public surface, exactly (as httpx tests its own).

For each package of :mod:`augret`: ``__all__`` lists every public name the package defines or
re-exports and nothing else, each name resolves to what it names (not to a submodule that
shadows it), and the list is sorted the way ruff's RUF022 sorts it. A module's ``__all__``
names only what the module has, without private names. The lists themselves are each
package's to choose; this test only keeps them honest.
"""

from __future__ import annotations
import __future__

import importlib
import pkgutil
import re
import types

import pytest

import augret

_FOUND = list(pkgutil.walk_packages(augret.__path__, "augret."))
PACKAGES = ["augret", *sorted(m.name for m in _FOUND if m.ispkg)]
MODULES = ["augret", *sorted(m.name for m in _FOUND if m.name != "augret.__main__")]


def _isort_key(name: str) -> tuple[int, list[object]]:
    """RUF022's order: SCREAMING_SNAKE_CASE, then CamelCase, then the rest; natural sort."""
    kind = 0 if len(name) > 1 and name.isupper() else 1 if name[:1].isupper() else 2
    return kind, [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _public_names(package: types.ModuleType) -> set[str]:
    """Names bound in the package that are its own or augret's, not modules or imports of
    third-party helpers (``typing.Any``, ``__future__`` features)."""
    names = set()
    for name, value in vars(package).items():
        if name.startswith("_") or isinstance(value, (types.ModuleType, __future__._Feature)):
            continue
        module = getattr(value, "__module__", None)
        if module is None or module == "augret" or module.startswith("augret."):
            names.add(name)
    return names


@pytest.fixture(scope="module", autouse=True)
def _every_module_imported() -> None:
    """Import every module first, so that a submodule shadowing an exported name shows."""
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional dependency that is not installed
            if not isinstance(exc, (ImportError, augret.MissingExtraError)):
                raise


@pytest.mark.parametrize("name", PACKAGES)
def test_package_all_is_its_public_surface(name: str) -> None:
    package = importlib.import_module(name)
    exported = list(getattr(package, "__all__", []))
    assert exported == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    assert not [n for n in exported if n.startswith("_") and n != "__version__"]
    eager = _public_names(package)
    assert eager <= set(exported), f"public in {name} but not in __all__: {eager - set(exported)}"
    for item in exported:
        value = getattr(package, item)  # lazy names resolve through the package's __getattr__
        assert not isinstance(value, types.ModuleType), f"{name}.{item} is a module"
        module = getattr(value, "__module__", None)
        assert module is None or module.startswith("augret"), f"{name}.{item} is {module}'s"


@pytest.mark.parametrize("name", MODULES)
def test_module_all_names_only_what_it_has(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except (ImportError, augret.MissingExtraError) as exc:
        pytest.skip(f"{name}: {exc}")
    exported = list(getattr(module, "__all__", []))
    assert exported == sorted(exported, key=_isort_key)
    assert not [n for n in exported if n.startswith("_") and n != "__version__"]
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"
