"""A bare asyncio loop that reports its own overruns, as the triggerer's watchdog measures them.

Run beside the triggerer during the sensor burst: when this loop, which does nothing else, also
overruns, the machine (not a trigger) held the CPU. Prints one line per overrun.
"""

from __future__ import annotations

import asyncio
import sys
import time

#: The watchdog's sleep and Airflow's default ``[triggerer] blocked_main_thread_warning_threshold``.
TICK, THRESHOLD = 0.1, 0.2


async def _tick() -> None:
    while True:
        last = time.monotonic()
        await asyncio.sleep(TICK)
        elapsed = time.monotonic() - last
        if elapsed > THRESHOLD:
            print(f"bare loop blocked for {elapsed:.2f} seconds", flush=True)


def main() -> int:
    print("ticking", flush=True)
    asyncio.run(_tick())
    return 0


if __name__ == "__main__":
    sys.exit(main())
