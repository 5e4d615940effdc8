"""A throwaway PostgreSQL cluster on loopback for Airflow's metadata database.

Uses Debian's server binaries (``/usr/lib/postgresql/<version>/bin``); the cluster runs as the
``postgres`` system user when this runs as root (the server refuses to run as root), with password
authentication over TCP and its data directory removed on stop.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from e2e_procs import DeploymentError, free_port, run_checked

DATABASE = "airflow"
ROLE = "airflow"


def server_bin_dir() -> Path:
    """The newest installed server's bin directory (``postgresql-NN`` package)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda path: int(path.parent.parent.name)
    )
    if not candidates:
        raise DeploymentError("no PostgreSQL server found: apt-get install -y postgresql")
    return candidates[-1].parent


class PostgresCluster:
    """``initdb`` + ``pg_ctl start`` on a free loopback port; ``stop()`` shuts down and deletes it."""

    def __init__(self, run_dir: Path, log_dir: Path) -> None:
        self.bin = server_bin_dir()
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.root = Path(tempfile.mkdtemp(prefix="pg-", dir=run_dir))
        self.data = self.root / "data"
        self.log_path = log_dir / "postgres.log"
        self.started = False

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{ROLE}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def _as_owner(self, argv: Sequence[str]) -> list[str]:
        """Prefix ``argv`` so it runs as the postgres user when we are root."""
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return list(argv)

    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self.log_path.touch()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (self.root.parent, self.root, pwfile, self.log_path):
                if path == self.root.parent:
                    path.chmod(path.stat().st_mode | 0o711)
                else:
                    os.chown(path, owner.pw_uid, owner.pw_gid)
        run_checked(
            self._as_owner(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    ROLE,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ]
            ),
            timeout=120,
        )
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        run_checked(
            self._as_owner(
                [
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log_path),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            timeout=90,
        )
        self.started = True
        (self.root.parent / "pgdata").write_text(str(self.data))
        run_checked(
            self._as_owner(
                [str(self.bin / "createdb"), "-h", str(self.root), "-p", str(self.port), "-U", ROLE, DATABASE]
            ),
            timeout=60,
        )

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Rows of one read-only statement against the metadata database (as Airflow's role)."""
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=ROLE, password=self.password, dbname=DATABASE
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, tuple(params))
                return list(cursor.fetchall())
        finally:
            connection.close()

    def stop(self) -> None:
        if self.started:
            run_checked(
                self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                timeout=60,
            )
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)
