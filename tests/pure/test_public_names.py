"""Each package's public names: what ``__all__`` promises is exactly what is there."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
from types import ModuleType

import pytest

import arete
import arete.errors
import edge_agent.errors

# Packages other sessions fill in; the ones that do not exist yet are skipped.
PACKAGES = ["arete", "arete_cli", "edge_agent", "mosquitto", "maestro", "web_api"]


def public_attributes(module: ModuleType) -> set[str]:
    """Public names bound in a package, not counting its own submodules."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }


def test_arete_all_is_exactly_what_the_package_exports() -> None:
    exported = set(arete.__all__)
    assert len(exported) == len(arete.__all__), "duplicates in arete.__all__"
    assert exported - {"__version__"} == public_attributes(arete)


@pytest.mark.parametrize("name", arete.__all__)
def test_every_arete_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from arete import {name}", namespace)  # noqa: S102 - the import statement is the test
    assert namespace[name] is getattr(arete, name)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from arete import *", namespace)  # noqa: S102 - the import statement is the test
    assert set(namespace) - {"__builtins__"} == set(arete.__all__)


def arete_modules() -> list[ModuleType]:
    return [
        importlib.import_module(f"arete.{info.name}")
        for info in pkgutil.iter_modules(arete.__path__)
    ]


def test_every_arete_error_derives_from_arete_error_and_lives_in_errors_py() -> None:
    errors = [
        value
        for value in vars(arete.errors).values()
        if inspect.isclass(value) and issubclass(value, BaseException)
    ]
    assert errors
    assert all(issubclass(error, arete.AreteError) for error in errors)
    everywhere = {
        value
        for module in arete_modules()
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__.startswith("arete")
    }
    assert {error.__module__ for error in everywhere} == {"arete.errors"}


def test_every_arete_error_is_exported() -> None:
    errors = {
        name
        for name, value in vars(arete.errors).items()
        if inspect.isclass(value) and issubclass(value, arete.AreteError)
    }
    assert errors <= set(arete.__all__)


def test_every_agent_error_derives_from_agent_error() -> None:
    errors = [
        value
        for value in vars(edge_agent.errors).values()
        if inspect.isclass(value) and issubclass(value, BaseException)
    ]
    assert errors
    assert all(issubclass(error, edge_agent.errors.AgentError) for error in errors)


@pytest.mark.parametrize("package", PACKAGES)
def test_declared_public_names_of_each_package_are_importable(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} does not exist yet")
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    if names is None:
        return
    assert len(set(names)) == len(names), f"duplicates in {package}.__all__"
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"
