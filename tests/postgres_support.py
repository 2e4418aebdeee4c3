"""A throwaway PostgreSQL server on loopback for the tests (review-log sink, server, Ray).

``running_postgres()`` initdb's a cluster in a fresh temp folder, starts it with ``pg_ctl``
on 127.0.0.1 and a free port (trust authentication, no Unix socket outside the folder),
creates a database, and on exit stops it (``pg_ctl stop -m immediate``) and deletes the
folder. PostgreSQL refuses to run as root: as root, the cluster belongs to the system user
``spillguard-pg`` (created if missing), and the folder and its parents must be reachable by
that user, which pytest's own tmp paths are not always.

When the binaries are missing or no unprivileged user can be had, ``PostgresUnavailable``
says why; the conftest fixture turns it into a skip with that reason.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_USER = "spillguard-pg"
DATABASE = "spill_guard_test"
BIN_ENV = "SPILL_GUARD_PG_BIN"  # a folder with initdb / pg_ctl, to override the lookup below


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    database: str
    folder: Path

    @property
    def url(self) -> str:
        """URL of the test database (superuser ``postgres``, trust auth: any password is accepted)."""
        return f"postgresql://postgres@{self.host}:{self.port}/{self.database}"

    def fresh_log_url(self) -> str:
        """The URL with a table of its own (``#table``), so tests never see each other's records."""
        return f"{self.url}#t_{uuid.uuid4().hex[:12]}"


def find_bin_dir() -> Path:
    candidates = [os.environ[BIN_ENV]] if os.environ.get(BIN_ENV) else []
    # Debian/Ubuntu install the server under its own lib folder, not on PATH; newest first.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                         if Path(p).parent.name.isdigit() else 0, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if all(os.access(Path(folder) / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    raise PostgresUnavailable(f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) found in "
                              f"/usr/lib/postgresql/*/bin or on PATH; install postgresql or set {BIN_ENV}.")


def server_account() -> pwd.struct_passwd | None:
    """The account the server runs as: ``None`` = this one; as root, the unprivileged ``spillguard-pg``."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    done = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    try:
        return pwd.getpwnam(PG_USER)  # also covers another process creating it at the same moment
    except KeyError:
        raise PostgresUnavailable(f"running as root and could not create the unprivileged user {PG_USER!r} "
                                  f"that PostgreSQL needs: {done.stderr.strip() or done.returncode}") from None


def _reachable_by_others(folder: Path) -> bool:
    """Every ancestor of ``folder`` lets other users traverse it (o+x)."""
    for parent in [folder, *folder.parents]:
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def make_folder(account: pwd.struct_passwd | None) -> Path:
    """A fresh mkdtemp folder that the server's account owns and can reach."""
    bases = [Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp")]
    base = next((b for b in bases if b.is_dir() and (account is None or _reachable_by_others(b))), None)
    if base is None:
        raise PostgresUnavailable(f"no temp folder that user {PG_USER!r} can reach (tried {[str(b) for b in bases]}).")
    folder = Path(tempfile.mkdtemp(prefix="spill-guard-pg-", dir=base))
    if account is not None:
        os.chown(folder, account.pw_uid, account.pw_gid)
    os.chmod(folder, 0o700)
    return folder


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as(account: pwd.struct_passwd | None, argv: list[str], cwd: Path, timeout: float = 120) -> None:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}
    kwargs = {} if account is None else {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    done = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    if done.returncode != 0:
        raise PostgresUnavailable(f"{' '.join(argv[:2])} failed ({done.returncode}): "
                                  f"{(done.stderr or done.stdout).strip()[-2000:]}")


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway server; stop it and delete its folder when the block ends."""
    bin_dir = find_bin_dir()
    account = server_account()
    folder = make_folder(account)
    data = folder / "data"
    started = False
    try:
        _run_as(account, [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                          "--encoding=UTF8", "--no-locale", "--no-sync"], cwd=folder)
        for attempt in range(3):  # the free port can be taken between probing and binding
            port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off "
                       "-c full_page_writes=off -c shared_buffers=32MB -c max_connections=120")
            try:
                _run_as(account, [str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-w", "-t", "60",
                                  "-l", str(folder / "server.log"), "-o", options], cwd=folder)
                started = True
                break
            except PostgresUnavailable:
                log = (folder / "server.log").read_text(errors="replace") if (folder / "server.log").exists() else ""
                if "could not bind" not in log or attempt == 2:
                    raise PostgresUnavailable(f"pg_ctl start failed; server log:\n{log[-2000:]}") from None
        _run_as(None, [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", DATABASE],
                cwd=folder)
        yield PostgresServer("127.0.0.1", port, DATABASE, folder)
    finally:
        try:
            if started:
                _run_as(account, [str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w"],
                        cwd=folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
