"""Demo: the Kumulos CRM emulator (10,000 users) on loopback and a round trip through KumulosCRMHook.

Starts the emulator as its own process, points a throwaway AIRFLOW_HOME under ``.demo/`` at it (the
``kumulos_default`` connection comes from the environment, as in a deployment), then tests the connection,
reads a page of users and sets, reads and deletes one user's attributes. Prints a short summary and stops
the emulator. Run it with ``make demo``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from _common import ROOT, airflow_env, emulator_process  # shared helpers, standard library only

USERS = 10_000
DEMO_USER = "demo-user-1"


def main() -> int:
    """Run the round trip; exit status 1 if any step failed."""
    demo_dir = ROOT / ".demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    env = airflow_env(demo_dir / "airflow-home")
    began = time.perf_counter()
    print(f"Starting the Kumulos CRM emulator with {USERS:,} users on loopback...")
    with emulator_process(USERS, demo_dir, env=env) as emulator:
        print(f"  listening on {emulator.base_url}")
        os.environ.update(env, AIRFLOW_CONN_KUMULOS_DEFAULT=emulator.connection_json())

        from airflow_provider_kumulos.exceptions import KumulosError
        from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

        hook = KumulosCRMHook()
        try:
            ok, message = hook.test_connection()
            print(f"\n1. Test connection: {'OK' if ok else 'FAILED'}: {message}")
            if not ok:
                return 1

            page = hook.fetch_users_page(1, 5)
            print(f"2. First page (5 per page) of {page.total_users:,} users:")
            for user in page.users:
                print(f"     {user['identifier']}")

            attributes = {"plan": "gold", "onboarded": True, "score": 42}
            hook.set_attributes(DEMO_USER, attributes)
            print(f"3. Set attributes of {DEMO_USER}: {sorted(attributes)}")
            read_back = hook.get_attributes(DEMO_USER)
            print(
                f"4. Read them back: {'identical' if read_back == attributes else f'DIFFERENT: {read_back}'}"
            )
            hook.delete_attributes(DEMO_USER)
            print(f"5. Deleted them; {DEMO_USER} now has {len(hook.get_attributes(DEMO_USER))} attributes")
        except KumulosError as error:
            print(f"\nFAILED: {type(error).__name__}: {error}")
            return 1
        finally:
            hook.close()

        requests = sorted(
            f"{operation} {status} x{count}" for (operation, status), count in hook.stats.requests.items()
        )
        print(
            f"\nRequests sent ({hook.stats.total_requests}, {hook.stats.retries} retries): {', '.join(requests)}"
        )
    print(f"Emulator stopped. Demo finished in {time.perf_counter() - began:.1f}s.")
    return 0 if read_back == attributes else 1


if __name__ == "__main__":
    sys.exit(main())
