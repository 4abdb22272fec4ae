"""Durable spool: every batch is appended here before it is sent, and forgotten once acked.

Write-ahead rather than overflow-only, so one path covers every failure: an
aggregator that is down, slow, or restarting, and a plugin server that is
killed (kill -9 loses only events not yet batched, at most one flush interval).

On disk: ``DIR/segment-<12 digits>.log`` files of records
``[u32 length][u32 crc32][serialized UsageBatch]``. A segment is deleted once
all its records are acked. After a restart every record still on disk is sent
again under its original batch and event ids; the aggregator deduplicates by
event id, so a record acked just before the crash costs nothing but bandwidth.
A torn tail (crash mid-append) fails its length or CRC check and is cut off.

Layout: ``<spool_dir>/<gateway node>/<sender key>/`` (the key is Kong's plugin
id, see ``config.sender_key``), locked with ``flock`` by the process that writes
it. Both parts are stable across restarts and config edits, so a restarted
plugin server finds its spool again whatever the aggregator addresses are now.
When another live process holds the directory (an old plugin server still
draining), the sender takes the next free slot ``<key>.1``, ``<key>.2``...: every
sender always has a durable spool of its own. Spools nobody holds (a slot left
by a previous process, a plugin config since deleted, the address-hash layout
of older versions) are orphans: a sender adopts them and drains them to the
aggregators it is configured with now, then removes them.

``MemorySpool`` has the same interface without durability, for ``spool_dir: ""``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import socket
import struct
import threading
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ai_chargeback_proto import pb

log = logging.getLogger("ai-chargeback.spool")

SEGMENT_MAX_BYTES = 8 * 1024 * 1024
# Slots per sender key: more live processes than this holding one key is a misconfiguration.
MAX_SLOTS = 16
_HEADER = struct.Struct(">II")
_SEGMENT_GLOB = "segment-*.log"
_LOCK_FILE = "lock"
_UNSAFE_IN_PATH = re.compile(r"[^A-Za-z0-9._-]")
# Spools of older versions: <spool_dir>/<16 hex digits of the address list's hash>/
_LEGACY_NAME = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True, slots=True, order=True)
class RecordKey:
    segment: int
    index: int


class SpoolFull(Exception):
    """Appending would pass the configured cap: the batch was not written."""


class MemorySpool:
    path: Path | None = None

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._unsent: deque[tuple[RecordKey, pb.UsageBatch, int]] = deque()
        self._unacked: dict[RecordKey, int] = {}
        self._bytes = 0
        self._next = 0
        self._lock = threading.Lock()

    def append(self, batch: pb.UsageBatch) -> RecordKey:
        size = batch.ByteSize()
        with self._lock:
            if self._bytes + size > self.max_bytes:
                raise SpoolFull(f"spool holds {self._bytes} bytes; cap is {self.max_bytes}")
            key = RecordKey(0, self._next)
            self._next += 1
            self._unsent.append((key, batch, size))
            self._unacked[key] = size
            self._bytes += size
            return key

    def next_unsent(self) -> tuple[RecordKey, pb.UsageBatch] | None:
        with self._lock:
            if not self._unsent:
                return None
            key, batch, _ = self._unsent.popleft()
            return key, batch

    def ack(self, key: RecordKey) -> None:
        with self._lock:
            self._bytes -= self._unacked.pop(key, 0)

    @property
    def unsent_count(self) -> int:
        return len(self._unsent)

    @property
    def bytes_used(self) -> int:
        return self._bytes

    @property
    def unacked_count(self) -> int:
        return len(self._unacked)

    def close(self) -> None:
        pass

    def remove(self) -> None:
        pass


class DiskSpool:
    def __init__(self, directory: str, max_bytes: int, *, segment_max_bytes: int = SEGMENT_MAX_BYTES) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self.path: Path | None = self._dir
        self.max_bytes = max_bytes
        self._segment_max_bytes = segment_max_bytes
        self._lock = threading.RLock()
        # segment id -> (records written, records acked); the active segment is the last.
        self._segments: dict[int, list[int]] = {}
        self._sizes: dict[int, int] = {}
        self._unsent: deque[tuple[RecordKey, int]] = deque()  # key, file offset
        self._acked: set[RecordKey] = set()
        self._active: int = 0
        self._writer = None
        self.lock_file: object = None
        self._recover()

    # -- recovery -------------------------------------------------------------
    def _recover(self) -> None:
        ids = sorted(int(p.stem.split("-")[1]) for p in self._dir.glob(_SEGMENT_GLOB))
        recovered = 0
        for segment in ids:
            offsets = self._scan(segment)
            self._segments[segment] = [len(offsets), 0]
            self._sizes[segment] = self._path(segment).stat().st_size
            for index, offset in enumerate(offsets):
                self._unsent.append((RecordKey(segment, index), offset))
            recovered += len(offsets)
            if not offsets:
                self._delete(segment)
        self._active = (ids[-1] + 1) if ids else 1
        self._open_active()
        if recovered:
            log.warning("ai-chargeback: %d spooled batches from a previous run will be delivered", recovered)

    def _scan(self, segment: int) -> list[int]:
        path = self._path(segment)
        offsets: list[int] = []
        with open(path, "rb") as handle:
            data = handle.read()
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, offset)
            end = offset + _HEADER.size + length
            if end > len(data) or zlib.crc32(data[offset + _HEADER.size : end]) != crc:
                break
            offsets.append(offset)
            offset = end
        if offset < len(data):
            log.warning("ai-chargeback: spool segment %s has a torn tail of %d bytes; cut off", path.name, len(data) - offset)
            with open(path, "r+b") as handle:
                handle.truncate(offset)
        return offsets

    # -- writing --------------------------------------------------------------
    def _path(self, segment: int) -> Path:
        return self._dir / f"segment-{segment:012d}.log"

    def _open_active(self) -> None:
        self._writer = open(self._path(self._active), "ab")  # noqa: SIM115 (kept open for appends)
        self._segments.setdefault(self._active, [0, 0])
        self._sizes.setdefault(self._active, 0)

    def append(self, batch: pb.UsageBatch) -> RecordKey:
        payload = batch.SerializeToString()
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if sum(self._sizes.values()) + len(record) > self.max_bytes:
                raise SpoolFull(f"spool holds {sum(self._sizes.values())} bytes; cap is {self.max_bytes}")
            if self._sizes[self._active] and self._sizes[self._active] + len(record) > self._segment_max_bytes:
                self._roll()
            assert self._writer is not None
            offset = self._sizes[self._active]
            self._writer.write(record)
            self._writer.flush()  # in the OS: survives a killed process
            counts = self._segments[self._active]
            key = RecordKey(self._active, counts[0])
            counts[0] += 1
            self._sizes[self._active] += len(record)
            self._unsent.append((key, offset))
            return key

    def _roll(self) -> None:
        assert self._writer is not None
        os.fsync(self._writer.fileno())
        self._writer.close()
        self._active += 1
        self._open_active()

    # -- reading and acking -----------------------------------------------------
    def next_unsent(self) -> tuple[RecordKey, pb.UsageBatch] | None:
        with self._lock:
            while self._unsent:
                key, offset = self._unsent.popleft()
                batch = self._read(key.segment, offset)
                if batch is not None:
                    return key, batch
                self.ack(key)  # unreadable: counted by _read, then forgotten
            return None

    def _read(self, segment: int, offset: int) -> pb.UsageBatch | None:
        try:
            with open(self._path(segment), "rb") as handle:
                handle.seek(offset)
                length, crc = _HEADER.unpack(handle.read(_HEADER.size))
                payload = handle.read(length)
            if zlib.crc32(payload) != crc:
                raise ValueError("crc mismatch")
            return pb.UsageBatch.FromString(payload)
        except Exception as exc:
            log.error("ai-chargeback: spool record %d@%d unreadable (%s); its events are lost", segment, offset, exc)
            return None

    def ack(self, key: RecordKey) -> None:
        with self._lock:
            counts = self._segments.get(key.segment)
            if counts is None or key in self._acked:
                return
            self._acked.add(key)
            counts[1] += 1
            if counts[1] >= counts[0]:
                if key.segment == self._active:
                    self._roll()  # nothing unacked in it: start fresh, delete it
                self._delete(key.segment)

    def _delete(self, segment: int) -> None:
        self._segments.pop(segment, None)
        self._sizes.pop(segment, None)
        self._acked = {k for k in self._acked if k.segment != segment}
        try:
            self._path(segment).unlink()
        except FileNotFoundError:
            pass

    @property
    def unsent_count(self) -> int:
        return len(self._unsent)

    @property
    def bytes_used(self) -> int:
        return sum(self._sizes.values())

    @property
    def unacked_count(self) -> int:
        with self._lock:
            return sum(written - acked for written, acked in self._segments.values())

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.flush()
                os.fsync(self._writer.fileno())
                self._writer.close()
                self._writer = None
            if self.lock_file is not None:
                self.lock_file.close()  # type: ignore[attr-defined]
                self.lock_file = None

    def remove(self) -> None:
        """Delete a drained spool's directory (an adopted orphan, once everything in it is acked)."""
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            shutil.rmtree(self._dir, ignore_errors=True)  # the lock goes with it, still held until closed
            if self.lock_file is not None:
                self.lock_file.close()  # type: ignore[attr-defined]
                self.lock_file = None


Spool = MemorySpool | DiskSpool


def node_name(hostname: str | None = None) -> str:
    """This gateway node as a directory name (hostnames are stable per node; pods get their own volume)."""
    return _UNSAFE_IN_PATH.sub("_", hostname or socket.gethostname())[:64] or "node"


def _lock(path: Path) -> object | None:
    """Take the directory's flock without waiting; the open file holds it (None: someone else does)."""
    path.mkdir(parents=True, exist_ok=True)
    lock = open(path / _LOCK_FILE, "a+b")  # noqa: SIM115 (held for as long as the spool is open)
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return None
    return lock


def _slot(key: str, n: int) -> str:
    return key if n == 0 else f"{key}.{n}"


def open_spool(directory: str, max_bytes: int, key: str, *, node: str | None = None) -> Spool:
    """The durable spool of sender ``key`` on this node: the first slot no live process holds.

    Raises OSError when the directory cannot be written (the caller says so loudly).
    """
    if not directory:
        return MemorySpool(max_bytes)
    base = Path(directory) / node_name(node)
    for n in range(MAX_SLOTS):
        path = base / _slot(key, n)
        lock = _lock(path)
        if lock is None:
            log.warning("ai-chargeback: spool %s is held by another process; using the next slot", path)
            continue
        spool = DiskSpool(str(path), max_bytes)
        spool.lock_file = lock
        return spool
    raise OSError(f"all {MAX_SLOTS} spool slots of {key} under {base} are held by other processes")


def own_slots(directory: str, key: str, *, node: str | None = None) -> list[Path]:
    """The slots of sender ``key`` on this node that hold records (from an earlier process)."""
    if not directory:
        return []
    base = Path(directory) / node_name(node)
    return [path for n in range(MAX_SLOTS) if (path := base / _slot(key, n)).is_dir() and any(path.glob(_SEGMENT_GLOB))]


def orphans(directory: str, *, node: str | None = None, live: frozenset[str] = frozenset()) -> list[Path]:
    """Spool directories on this node (and address-hash spools of older versions) that hold
    records, except those of the sender keys in ``live``. Holding is checked when adopting
    (the lock), not here. One directory listing: call it from one place per process."""
    if not directory:
        return []
    root = Path(directory)
    found: list[Path] = []
    base = root / node_name(node)
    if base.is_dir():
        for path in sorted(base.iterdir()):
            key, _, slot = path.name.rpartition(".")
            if not (slot.isdigit() and key):
                key = path.name
            if key not in live and path.is_dir() and any(path.glob(_SEGMENT_GLOB)):
                found.append(path)
    if root.is_dir():
        found += [p for p in sorted(root.iterdir()) if p.is_dir() and _LEGACY_NAME.match(p.name) and any(p.glob(_SEGMENT_GLOB))]
    return found


def adopt(path: Path, max_bytes: int) -> DiskSpool | None:
    """Open an orphan spool for draining, or None when a live process holds it."""
    lock = _lock(path)
    if lock is None:
        return None
    spool = DiskSpool(str(path), max_bytes)
    spool.lock_file = lock
    if spool.unsent_count:
        log.warning("ai-chargeback: adopted spool %s: %d batches to deliver", path, spool.unsent_count)
    return spool
