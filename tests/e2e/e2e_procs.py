"""Background services of the deployment test: each in its own process group with its own log file.

Every wait has a deadline and fails fast, naming the service, when a service it depends on has died;
every service is stopped (whole process group, SIGTERM then SIGKILL) however the run ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class DeploymentError(RuntimeError):
    """The deployment did not behave as expected (a service died, a wait ran out, a check failed)."""


def base_env() -> dict[str, str]:
    """This process's environment without any Airflow setting, so nothing leaks in from outside."""
    return {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """One long-running command, started in a new session so the whole group can be signalled."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path | None = None) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        if self.process is None:
            raise DeploymentError(f"service {self.name} was never started")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the process group, SIGKILL whatever is left after ``grace`` seconds."""
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            if _group_gone(self.process, wait):
                break
        self.process.poll()


def _group_gone(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait until the leader has exited and no member of its process group is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


class ServiceGroup:
    """The services of one run, stopped in reverse start order; live group ids are kept in ``pgid_file``.

    The pgid file lets the CI wrapper kill what is left should this process itself be killed.
    """

    def __init__(self, log_dir: Path, pgid_file: Path) -> None:
        self.log_dir = log_dir
        self.pgid_file = pgid_file
        self.services: list[Service] = []

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> Service:
        service = Service(name, argv, env, self.log_dir)
        service.start(cwd)
        self.services.append(service)
        self._record()
        return service

    def stop(self, service: Service) -> None:
        service.stop()
        self.services.remove(service)
        self._record()

    def get(self, name: str) -> Service:
        """The running service called ``name``."""
        for service in self.services:
            if service.name == name:
                return service
        raise DeploymentError(f"no running service called {name!r}")

    def kill(self, service: Service) -> list[int]:
        """SIGKILL the service and every process it started, whatever their process group (a lost
        machine: nothing gets to clean up). Returns the pids killed."""
        killed = kill_tree(service.pid)
        if service.process is not None:
            _group_gone(service.process, 10.0)
        self.services.remove(service)
        self._record()
        return killed

    def stop_all(self) -> None:
        while self.services:
            self.stop(self.services[-1])

    def _record(self) -> None:
        """Rewrite the pgid file with the running services only, so no stale id is ever signalled."""
        self.pgid_file.write_text("".join(f"{service.pid} {service.name}\n" for service in self.services))

    def check_alive(self) -> None:
        for service in self.services:
            if not service.alive():
                raise DeploymentError(f"service {service.name} exited early (log: {service.log_path})")

    def tails(self, lines: int = 40) -> str:
        return "\n".join(
            f"----- {path.stem} (last {lines} lines of {path}) -----\n{_tail_file(path, lines)}"
            for path in sorted(self.log_dir.glob("*.log"))
        )


def _tail_file(path: Path, lines: int) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it, from ``/proc`` (children may sit in other groups)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def kill_tree(pid: int) -> list[int]:
    """Stop ``pid`` and its descendants at once (SIGSTOP first, so none reacts to another's death),
    then SIGKILL them all; returns the pids signalled."""
    tree = descendants(pid)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for member in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, sig)
    return tree


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    services: ServiceGroup | None = None,
    interval: float = 0.5,
) -> T:
    """Poll ``probe`` until it returns something other than None; DeploymentError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if services is not None:
            services.check_alive()
        result = probe()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise DeploymentError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def run_checked(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 300.0) -> str:
    """Run a short command to completion; its output is in the error if it fails or overruns."""
    try:
        done = subprocess.run(
            list(argv),
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise DeploymentError(f"{argv[0]} did not finish within {timeout:.0f}s: {exc.output!r}") from None
    if done.returncode != 0:
        raise DeploymentError(
            f"{' '.join(argv[:3])} failed with exit status {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout
