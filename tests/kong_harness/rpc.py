"""msgpack-RPC client that talks to a plugin server the way Kong's mp_rpc does.

Kong (kong/runloop/plugin_servers/rpc/mp_rpc.lua, `Rpc:call`): take a
connection from the keepalive pool, send `[0, msgid, method, {args}]`, read
msgpack objects until `[1, msgid, err, result]`, put the connection back.
Notifications `[2, label, args]` may arrive before the answer.
"""

from __future__ import annotations

import collections
import itertools
import socket
import threading
from typing import Any

import msgpack

from .errors import RpcError, RpcProtocolError, RpcTimeout
from .luaisms import lua_packb

_REQUEST, _RESPONSE, _NOTIFICATION = 0, 1, 2


class _Connection:
    def __init__(self, path: str, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        # One unpacker per connection: bytes of a following message are never
        # lost even if a read returns more than one object.
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class MsgpackRpcClient:
    """Thread-safe; many calls may be in flight at once on separate connections."""

    def __init__(self, socket_path: str, *, timeout: float = 30.0, max_idle: int = 64) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: collections.deque[_Connection] = collections.deque()
        self._lock = threading.Lock()
        self._msgids = itertools.count(1)
        self._calls: collections.Counter[str] = collections.Counter()
        self._connections_opened = 0
        self.notifications: list[tuple[str, Any]] = []
        self._closed = False

    # ---------- pool ----------

    def _acquire(self) -> _Connection:
        with self._lock:
            if self._closed:
                raise RpcProtocolError("RPC client is closed")
            if self._idle:
                return self._idle.pop()
            self._connections_opened += 1
        return _Connection(self.socket_path, self.timeout)

    def _release(self, conn: _Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), collections.deque()
        for conn in idle:
            conn.close()

    # ---------- calls ----------

    def call(self, method: str, *args: Any) -> Any:
        """Send one request and return its result; raise RpcError on an error reply."""
        with self._lock:
            msgid = next(self._msgids) & 0xFFFFFFFF
            self._calls[method] += 1
        # Kong packs with lua-MessagePack: strings as str whatever their bytes, fix_raw values as bin.
        payload = lua_packb([_REQUEST, msgid, method, list(args)])
        conn = self._acquire()
        try:
            conn.sock.sendall(payload)
            reply = self._read_reply(conn, msgid, method)
        except TimeoutError as exc:
            conn.close()
            raise RpcTimeout(
                f"{method}: no answer from the plugin server within {self.timeout}s "
                "(kong-pdk never answers an event whose handler raised)"
            ) from exc
        except BaseException:
            # The connection may still have an unanswered request on it: never
            # hand it to another caller.
            conn.close()
            raise
        self._release(conn)
        _, _, error, result = reply
        if error is not None:
            raise RpcError(method, error if isinstance(error, str) else repr(error))
        return result

    def _read_reply(self, conn: _Connection, msgid: int, method: str) -> list[Any]:
        while True:
            for message in conn.unpacker:
                if not isinstance(message, (list, tuple)) or not message:
                    raise RpcProtocolError(f"{method}: not a msgpack-RPC message: {message!r}")
                kind = message[0]
                if kind == _NOTIFICATION:
                    with self._lock:
                        self.notifications.append((message[1], message[2] if len(message) > 2 else None))
                    continue
                if kind != _RESPONSE or len(message) != 4:
                    raise RpcProtocolError(f"{method}: RPC response expected, got {message!r}")
                if message[1] != msgid:
                    raise RpcProtocolError(f"{method}: unexpected RPC response ID {message[1]} (wanted {msgid})")
                return list(message)
            data = conn.sock.recv(65536)
            if not data:
                raise RpcProtocolError(f"{method}: plugin server closed the connection (no data)")
            conn.unpacker.feed(data)

    # ---------- counters ----------

    @property
    def calls_by_method(self) -> dict[str, int]:
        with self._lock:
            return dict(self._calls)

    @property
    def connections_opened(self) -> int:
        with self._lock:
            return self._connections_opened

    @property
    def idle_connections(self) -> int:
        with self._lock:
            return len(self._idle)

    def reset_counters(self) -> None:
        with self._lock:
            self._calls.clear()
