"""Every difference between the supported Airflow releases (3.1 up to the newest), in one place.

Each helper imports lazily, so importing this module costs nothing at DAG-parse time. These are our
own shims rather than ``apache-airflow-providers-common-compat``'s ``sdk`` module: that provider is
not a dependency of this one, and the release pinned with the Airflow 3.1 floor (1.7.4) has no
``sdk`` module at all.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def stats() -> Any:
    """Airflow's ``Stats`` facade (``airflow.sdk.observability`` from 3.2, ``airflow.stats`` before)."""
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # Airflow < 3.2
        from airflow.stats import Stats
    return Stats


@functools.cache
def conf() -> Any:
    """Airflow's configuration (``airflow.sdk.configuration`` from 3.2, ``airflow.configuration`` before)."""
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow < 3.2
        from airflow.configuration import conf
    return conf


def not_found_errors() -> tuple[type[Exception], ...]:
    """The exception(s) Airflow raises for an undefined connection id (its home moved during Airflow 3)."""
    import airflow.exceptions

    found: list[type[Exception]] = [airflow.exceptions.AirflowNotFoundException]
    try:
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # older Airflow 3 releases raise the core class only
        return tuple(found)
    return (*found, AirflowNotFoundException)


def sensor_timeout(message: str) -> Exception:
    """Airflow's sensor-timeout error (its module moved during Airflow 3)."""
    try:
        from airflow.sdk.exceptions import AirflowSensorTimeout
    except ImportError:  # older Airflow 3 releases
        from airflow.exceptions import AirflowSensorTimeout  # type: ignore[no-redef]
    return AirflowSensorTimeout(message)


def async_connection_getters() -> bool:
    """Whether ``Connection`` masks secrets asynchronously (``aextra_dejson``, Airflow >= 3.3.2).

    Before that the async getters mask with a blocking call to the supervisor, which fails on a busy
    event loop, so callers look connections up synchronously in a worker thread instead.
    """
    from airflow.sdk import Connection

    return hasattr(Connection, "aextra_dejson")


def bucket(path: Any) -> str:
    """The bucket of an object-storage path (``""`` where there is none).

    Airflow 3.1's ``ObjectStoragePath`` keeps the connection id in it (``conn_id@bucket``); later
    releases do not.
    """
    return str(getattr(path, "bucket", "")).rpartition("@")[2]
