"""Every public class documents each argument of its constructor in a ``:param:`` list, as Airflow's providers do."""

from __future__ import annotations

import inspect
import re

import pytest
from airflow.sdk import BaseHook, BaseOperator
from airflow.triggers.base import BaseTrigger

from airflow_provider_kumulos.hooks.kumulos import KumulosCRMAsyncHook, KumulosCRMHook
from airflow_provider_kumulos.operators.kumulos import (
    DeleteAttributesOperator,
    ExportUsersOperator,
    SetAttributesOperator,
    WriteExportManifestOperator,
)
from airflow_provider_kumulos.sensors.kumulos import KumulosUserSensor
from airflow_provider_kumulos.triggers.kumulos import KumulosUserTrigger

PUBLIC = [
    ExportUsersOperator,
    WriteExportManifestOperator,
    SetAttributesOperator,
    DeleteAttributesOperator,
    KumulosUserSensor,
    KumulosUserTrigger,
    KumulosCRMHook,
    KumulosCRMAsyncHook,
]


def constructor_arguments(cls: type) -> set[str]:
    """Named arguments of ``cls``'s constructors, up to Airflow's base classes (theirs are documented there)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass in (BaseOperator, BaseHook, BaseTrigger) or klass.__module__.startswith("airflow."):
            break
        if "__init__" in vars(klass):
            for parameter in inspect.signature(vars(klass)["__init__"]).parameters.values():
                if parameter.name != "self" and parameter.kind is not inspect.Parameter.VAR_KEYWORD:
                    names.add(parameter.name)
    return names


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_every_constructor_argument_has_a_param_entry(cls: type) -> None:
    documented = re.findall(r"^\s*:param (\w+):", cls.__doc__ or "", flags=re.MULTILINE)
    assert len(documented) == len(set(documented)), f"{cls.__name__} documents an argument twice"
    assert set(documented) == constructor_arguments(cls)
