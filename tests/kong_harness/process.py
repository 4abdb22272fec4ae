"""Owning a dedicated kong-pdk plugin server process, the way Kong does.

Kong runs `pluginserver_<name>_query_cmd` once (stdout parsed as JSON, first
entry used: kong/runloop/plugin_servers/process.lua) and spawns
`pluginserver_<name>_start_cmd`, merging stderr into stdout, and kills it with
SIGTERM on shutdown. kong-pdk's orphan watchdog only works in gevent mode, so
whoever starts the server must reap it: this module does, including at
interpreter exit.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PluginInfoError, PluginServerStartError

_PR_SET_PDEATHSIG = 1
_LIVE_PROCESSES: weakref.WeakSet[PluginServerProcess] = weakref.WeakSet()


@dataclass(frozen=True)
class PluginInfo:
    """One entry of the query command's JSON list (the one Kong uses)."""

    name: str
    phases: tuple[str, ...]
    priority: int
    version: str | None
    schema: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    @property
    def config_schema(self) -> dict[str, Any]:
        """The `config` record of the Schema ({"type": "record", "fields": [...]})."""
        for item in self.schema.get("fields", []):
            if "config" in item:
                return item["config"]
        raise PluginInfoError(f"plugin {self.name}: Schema has no 'config' field")

    @classmethod
    def from_entry(cls, entry: Any) -> PluginInfo:
        if not isinstance(entry, dict):
            raise PluginInfoError(f"plugin info entry is not an object: {entry!r}")
        missing = [k for k in ("Name", "Phases", "Priority", "Schema") if k not in entry]
        if missing:
            raise PluginInfoError(f"plugin info entry lacks {missing}: {entry!r}")
        return cls(
            name=entry["Name"],
            phases=tuple(entry["Phases"]),
            priority=entry["Priority"],
            version=entry.get("Version"),
            schema=entry["Schema"],
            raw=entry,
        )


def parse_dump_output(stdout: bytes | str, *, command: Sequence[str] = ()) -> PluginInfo:
    """Parse `--dump` stdout exactly as strictly as Kong's cjson.decode does.

    Anything besides one JSON document (a warning printed by an import, a
    second document) breaks Kong's start-up, so it fails here too.
    """
    text = stdout.decode("utf-8", errors="replace") if isinstance(stdout, bytes) else stdout
    where = f" (from {' '.join(command)})" if command else ""
    try:
        dump = json.loads(text)
    except ValueError as exc:
        raise PluginInfoError(
            f"query command stdout is not one JSON document{where}: {exc}\n--- stdout ---\n{text[:2000]}"
        ) from exc
    if not isinstance(dump, list) or not dump:
        raise PluginInfoError(f"query command stdout is not a non-empty JSON list{where}: {text[:2000]}")
    # Kong 3.9+ reads only dump[1]; a dedicated server prints exactly one.
    return PluginInfo.from_entry(dump[0])


def find_console_script(name: str) -> str | None:
    """Locate a console script on PATH or next to the running interpreter.

    Tests run as `.venv/bin/pytest` without activating the venv, so the venv's
    bin directory is not necessarily on PATH.
    """
    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return None


def _load_libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


# Loaded in the parent: dlopen() between fork and exec could deadlock on the
# loader lock if another thread held it at fork time.
_LIBC = _load_libc() if sys.platform == "linux" else None


def _die_with_parent() -> None:
    # The child gets SIGKILL when the thread that spawned it dies, so a
    # crashed or killed pytest never leaves servers behind.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class PluginServerProcess:
    """A dedicated kong-pdk plugin server (`start_dedicated_server`) we own.

    `command` is the start command without server flags, e.g.
    `["ai-chargeback-pluginserver"]` or `[sys.executable, "path/to/plugin.py"]`.
    The same command plus `--dump` is the query command.

    `die_with_parent` (Linux) sets PR_SET_PDEATHSIG: the server is killed when
    the *thread* that started it exits, so start servers from a thread that
    outlives them (the main thread, a pytest fixture).
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        prefix: str | os.PathLike[str] | None = None,
        socket_name: str | None = None,
        gevent: bool = False,
        lua_style: bool = False,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        log_path: str | os.PathLike[str] | None = None,
        start_timeout: float = 20.0,
        die_with_parent: bool = True,
    ) -> None:
        if not command:
            raise ValueError("empty plugin server command")
        self.command = list(command)
        self.gevent = gevent
        self.lua_style = lua_style
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.die_with_parent = die_with_parent
        self._owns_prefix = prefix is None
        self.prefix = Path(prefix) if prefix is not None else Path(tempfile.mkdtemp(prefix="kh-"))
        self.socket_name = socket_name or f"{Path(self.command[-1]).stem}.sock"
        self.log_path = Path(log_path) if log_path else self.prefix / f"{self.socket_name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._info: PluginInfo | None = None
        self._lock = threading.Lock()
        self.dump_stderr = ""
        # Appended to `--dump`: the query command of a server that serves several plugins names one.
        self.query_args: list[str] = []

    # ---------- convenience constructors ----------

    @classmethod
    def for_script(cls, path: str | os.PathLike[str], **kwargs: Any) -> PluginServerProcess:
        return cls([sys.executable, str(path)], **kwargs)

    @classmethod
    def for_module(cls, module: str, **kwargs: Any) -> PluginServerProcess:
        return cls([sys.executable, "-m", module], **kwargs)

    @classmethod
    def for_console_script(cls, name: str, **kwargs: Any) -> PluginServerProcess:
        path = find_console_script(name)
        if path is None:
            raise PluginServerStartError(f"console script {name!r} not found on PATH or next to {sys.executable}")
        kwargs.setdefault("socket_name", f"{name}.sock")
        return cls([path], **kwargs)

    # ---------- properties ----------

    @property
    def socket_path(self) -> str:
        return str(self.prefix / self.socket_name)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def server_args(self) -> list[str]:
        args = ["-p", str(self.prefix), "--socket-name", self.socket_name]
        if self.gevent:
            args.append("-g")
        if not self.lua_style:
            args.append("--no-lua-style")
        return args + self.extra_args

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        return env

    # ---------- query command ----------

    def dump_info(self, timeout: float = 60.0) -> PluginInfo:
        """Run `<command> --dump` once (cached) and parse it like Kong."""
        if self._info is None:
            cmd = self.command + ["--dump", *self.query_args]
            result = subprocess.run(cmd, capture_output=True, timeout=timeout, env=self._child_env())
            self.dump_stderr = result.stderr.decode("utf-8", errors="replace")
            if result.returncode != 0:
                raise PluginInfoError(
                    f"query command {' '.join(cmd)} exited {result.returncode}\n"
                    f"--- stdout ---\n{result.stdout.decode(errors='replace')[:2000]}\n"
                    f"--- stderr ---\n{self.dump_stderr[-4000:]}"
                )
            self._info = parse_dump_output(result.stdout, command=cmd)
        return self._info

    @property
    def info(self) -> PluginInfo:
        return self.dump_info()

    # ---------- lifecycle ----------

    def start(self) -> PluginServerProcess:
        with self._lock:
            if self.running:
                return self
            self.prefix.mkdir(parents=True, exist_ok=True)
            if len(self.socket_path) > 100:
                raise PluginServerStartError(f"unix socket path too long: {self.socket_path}")
            # A stale socket file would make the readiness probe lie.
            Path(self.socket_path).unlink(missing_ok=True)
            self._log_file = open(self.log_path, "ab", buffering=0)
            cmd = self.command + self.server_args
            self._log_file.write(f"### harness: starting {' '.join(cmd)}\n".encode())
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,  # Kong spawns with merge_stderr
                env=self._child_env(),
                preexec_fn=_die_with_parent if self.die_with_parent and _LIBC is not None else None,
            )
            _LIVE_PROCESSES.add(self)
        self._wait_for_socket()
        return self

    def _wait_for_socket(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise PluginServerStartError(
                    f"plugin server exited with {self._proc.returncode} before listening\n{self.read_log()[-4000:]}"
                )
            if os.path.exists(self.socket_path):
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(self.socket_path)
                    return
                except OSError:
                    pass
                finally:
                    probe.close()
            time.sleep(0.02)
        self.stop()
        raise PluginServerStartError(
            f"plugin server socket {self.socket_path} not ready after {self.start_timeout}s\n{self.read_log()[-4000:]}"
        )

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (what Kong sends), then SIGKILL; always reaps."""
        with self._lock:
            proc, self._proc = self._proc, None
            returncode = None
            if proc is not None:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=timeout)
                returncode = proc.returncode
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            Path(self.socket_path).unlink(missing_ok=True)
            _LIVE_PROCESSES.discard(self)
            return returncode

    def restart(self) -> PluginServerProcess:
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop and remove the prefix directory if the harness created it."""
        self.stop()
        if self._owns_prefix:
            shutil.rmtree(self.prefix, ignore_errors=True)

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> PluginServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<PluginServerProcess {' '.join(self.command)} pid={self.pid} socket={self.socket_path}>"


class SharedPluginServer(PluginServerProcess):
    """Another plugin served by `owner`'s process, the way Kong is configured for it.

    Kong 3.9+ takes one plugin per ``pluginserver_names`` entry (the first of its
    query command's list: kong/runloop/plugin_servers/process.lua). A second plugin
    of the same process is a second entry with its own query command, the owner's
    socket, and no start command: Kong then leaves the process alone
    (kong/conf_loader/init.lua, "assuming external process management"). So this
    runs `owner`'s command with ``--dump`` plus `query_args`, and starts and stops
    nothing of its own: starting it starts the owner, stopping it stops nothing.
    """

    def __init__(self, owner: PluginServerProcess, query_args: Sequence[str]) -> None:
        super().__init__(owner.command, prefix=owner.prefix, socket_name=owner.socket_name, env=owner.env,
                         log_path=owner.log_path, die_with_parent=owner.die_with_parent)  # fmt: skip
        self.owner = owner
        self.query_args = list(query_args)
        self._owns_prefix = False

    @property
    def pid(self) -> int | None:
        return self.owner.pid

    @property
    def running(self) -> bool:
        return self.owner.running

    def start(self) -> PluginServerProcess:
        self.owner.start()
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        return None


@atexit.register
def _reap_all() -> None:
    for proc in list(_LIVE_PROCESSES):
        try:
            proc.stop(timeout=2.0)
        except Exception:  # noqa: BLE001 - interpreter is exiting; best effort
            pass
