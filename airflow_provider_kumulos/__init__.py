"""Apache Airflow provider for the Kumulos CRM API.

Importing this package is cheap on purpose: Airflow calls :func:`get_provider_info` while it
discovers providers, so nothing here imports Airflow, ``requests`` or ``tenacity``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's ProvidersManager (validated against its JSON schema)."""
    return {
        "package-name": "airflow-provider-kumulos",
        "name": "Kumulos",
        # Airflow strips the reStructuredText marks for its UI and CLI, and its providers page turns
        # a word that starts with http(s):// into a link with no space after it: the URL comes last.
        "description": "Export users, set and delete user attributes, and wait for users to appear "
        "in `Kumulos CRM <https://docs.kumulos.com/>`__.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Kumulos CRM",
                "external-doc-url": "https://docs.kumulos.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Kumulos CRM",
                "python-modules": ["airflow_provider_kumulos.hooks.kumulos"],
            }
        ],
        "operators": [
            {
                "integration-name": "Kumulos CRM",
                "python-modules": ["airflow_provider_kumulos.operators.kumulos"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Kumulos CRM",
                "python-modules": ["airflow_provider_kumulos.sensors.kumulos"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Kumulos CRM",
                "python-modules": ["airflow_provider_kumulos.triggers.kumulos"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_kumulos.hooks.kumulos.KumulosCRMHook",
                "connection-type": "kumulos",
                "hook-name": "Kumulos CRM",
                "ui-field-behaviour": {
                    "hidden-fields": UI_FIELD_BEHAVIOUR["hidden_fields"],
                    "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
                    "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
                },
                "conn-fields": {
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
                        "description": "Read timeout per request, > 0 (default 60). The connect timeout "
                        "is the 'Connect timeout' field.",
                    },
                    "connect_timeout": {
                        "label": "Connect timeout (seconds)",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
                        "description": "Time allowed to open a connection, > 0 (default 10).",
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "schema": {"type": ["integer", "null"], "minimum": 0},
                        "description": "Retries of 429/5xx/network errors (default 5).",
                    },
                    "verify": {
                        "label": "Verify TLS (true/false or CA bundle path)",
                        "schema": {"type": ["string", "null"]},
                        "description": "true (default): check the server's certificate; false: do not "
                        "check it (local tests only); or the path of a CA bundle file that exists on the "
                        "workers and the triggerer, for a private certificate authority.",
                    },
                },
            }
        ],
    }


#: Connection form layout, shared by provider info (Airflow >= 3.2) and the hook (older releases).
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema", "port"],
    "relabeling": {"login": "API key", "password": "Server key", "host": "Base URL"},
    "placeholders": {
        "host": "https://crm.kumulos.com (default); no scheme means https://",
        "login": "your app's API key",
        "password": "your app's server key",
        "extra": '{"timeout": 60, "connect_timeout": 10, "max_retries": 5, "verify": true}',
    },
}
