"""The :class:`OmniPaxos` node: one server of an Omni-Paxos cluster."""

from __future__ import annotations

import contextlib
import ctypes
import enum
import json
import operator
import os
import threading
from ctypes import byref, c_bool, c_int, c_size_t, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Tuple, Type, TypeVar, Union

from . import _ffi
from .errors import (
    ClosedError,
    InvalidArgumentError,
    OmniPaxosError,
    ResultCode,
    error_for_code,
)

__all__ = [
    "Ballot",
    "Entry",
    "EntryKind",
    "OmniPaxos",
    "StopSign",
    "version",
    "wire_version",
    "strerror",
    "MessageHeader",
    "message_header",
    "library_path",
]

_U64_MAX = (1 << 64) - 1

#: What ``bytes`` arguments accept.
BytesLike = Union[bytes, bytearray, memoryview]
#: What path arguments accept.
PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

_T = TypeVar("_T", bound="OmniPaxos")


class EntryKind(enum.IntEnum):
    """``omnipaxos_entry_kind``: what a log position holds."""

    DECIDED = 0
    UNDECIDED = 1
    STOPSIGN = 2
    TRIMMED = 3


@dataclass(frozen=True, order=True)
class Ballot:
    """A ballot ``(n, priority, pid)``; ballots compare in that order."""

    n: int
    priority: int
    pid: int


@dataclass(frozen=True)
class Entry:
    """One log position as read by :meth:`OmniPaxos.read_entry` and friends."""

    idx: int
    """The log index."""
    data: bytes
    """The entry's bytes (empty for a trimmed position)."""
    kind: Union[EntryKind, int]
    """Decided, undecided, StopSign or trimmed (a plain ``int`` for a kind this binding
    does not know)."""

    @property
    def decided(self) -> bool:
        """Whether the entry is decided."""
        return self.kind == EntryKind.DECIDED


@dataclass(frozen=True)
class StopSign:
    """The last entry of a configuration: what the next configuration is (see
    :meth:`OmniPaxos.reconfigure`)."""

    next_config_id: int
    """The id of the next configuration (its nodes' ``config_id``)."""
    nodes: Tuple[int, ...]
    """The pids of the next configuration's nodes, in the order they were given."""
    metadata: bytes
    """Opaque application data given with the proposal."""


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def _text(raw: Optional[bytes]) -> str:
    return "" if raw is None else raw.decode("utf-8", "replace")


def _last_error(lib: ctypes.CDLL) -> str:
    """The calling thread's last-error message from the library ("" when none)."""
    n = lib.omnipaxos_last_error(None, 0)
    if not n:
        return ""
    buf = ctypes.create_string_buffer(n + 1)
    got = lib.omnipaxos_last_error(buf, n + 1)
    return buf.raw[: min(n, got)].decode("utf-8", "replace")


def _error(lib: ctypes.CDLL, code: int) -> OmniPaxosError:
    message = _last_error(lib) or _text(lib.omnipaxos_strerror(code)) or f"error code {code}"
    return error_for_code(code, message)


def _check(lib: ctypes.CDLL, code: int) -> None:
    if code != ResultCode.OK:
        raise _error(lib, code)


def _u64(value: Any, what: str) -> int:
    """``value`` as an unsigned 64-bit integer: TypeError for a non-integer (bool included),
    InvalidArgumentError (a ValueError) outside ``0 .. 2**64-1``."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int, not {type(value).__name__}") from None
    if not 0 <= v <= _U64_MAX:
        raise InvalidArgumentError(
            f"{what} must be in 0..2**64-1, got {v}", ResultCode.INVALID_ARGUMENT
        )
    return v


def _as_bytes(data: Any, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes, bytearray or memoryview, not {type(data).__name__}")


def _copy(addr: Optional[int], n: int) -> bytes:
    """Copies ``n`` bytes at ``addr`` out of library-owned memory."""
    if not n:
        return b""
    if not addr:
        raise OmniPaxosError(f"the library returned a NULL pointer for {n} bytes")
    return ctypes.string_at(addr, n)


def _kind(value: int) -> Union[EntryKind, int]:
    try:
        return EntryKind(value)
    except ValueError:
        return value


# ---------------------------------------------------------------------------------------
# Module functions
# ---------------------------------------------------------------------------------------


def version() -> str:
    """The library's version, e.g. ``"0.1.0"``."""
    return _text(_ffi.lib().omnipaxos_version())


def wire_version() -> int:
    """The wire-format version this library speaks (the third byte of every message, after
    the 2-byte magic number ``b"\\xce\\xa9"``)."""
    return int(_ffi.lib().omnipaxos_wire_version())


def strerror(code: int) -> str:
    """The library's generic text for a result code ("unknown error code" for others)."""
    return _text(_ffi.lib().omnipaxos_strerror(int(code)))


@dataclass(frozen=True)
class MessageHeader:
    """The header of an encoded message (see :func:`message_header`)."""

    config_id: int
    """The configuration the message belongs to (its sender's ``config_id``)."""
    sender: int
    """The sender's pid."""
    receiver: int
    """The receiver's pid."""


def message_header(data: BytesLike) -> MessageHeader:
    """Reads the header of a message (bytes from :meth:`OmniPaxos.outgoing`) without a
    node: which configuration it belongs to, its sender and its receiver. Use it to route
    messages when one process runs the nodes of two configurations during a
    reconfiguration. Only the fixed header is read; :meth:`OmniPaxos.handle_incoming`
    still checks the whole message.

    Raises :class:`~omnipaxos.MalformedMessageError` for bytes shorter than the header,
    :class:`~omnipaxos.UnsupportedVersionError` for another wire-format version, and
    ``TypeError`` for data that is not bytes-like."""
    raw = _as_bytes(data, "data")
    lib = _ffi.lib()
    config_id, sender, receiver = c_uint32(), c_uint64(), c_uint64()
    _check(
        lib,
        lib.omnipaxos_message_header(
            raw, len(raw), byref(config_id), byref(sender), byref(receiver)
        ),
    )
    return MessageHeader(int(config_id.value), int(sender.value), int(receiver.value))


def library_path() -> str:
    """The path of the loaded ``libomnipaxos`` (loads it if needed)."""
    return _ffi.library_path()


# ---------------------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------------------


class OmniPaxos:
    """One Omni-Paxos server. It does no I/O: the caller owns the network and the clock.

    Drive it like this: call :meth:`tick` at a steady pace (heartbeats go out every
    quarter of ``election_tick_timeout`` ticks); pass every message received from a peer to
    :meth:`handle_incoming`; send every ``(receiver, bytes)`` returned by :meth:`outgoing`
    to that peer; :meth:`append` entries; read the decided log with :meth:`read_decided`.
    Messages may be lost, duplicated or reordered; call :meth:`reconnected` when a link to a
    peer comes back.

    Create nodes with :meth:`from_hocon`, :meth:`from_hocon_str` or :meth:`from_config`.
    A node holds a native handle: call :meth:`close` (or use it as a context manager) to
    free it deterministically; otherwise it is freed when garbage-collected. Every method
    of a closed node raises :class:`~omnipaxos.ClosedError`.

    Thread safety: a node may be used from several threads. The C library serialises the
    calls on one node (a mutex), and this wrapper also holds a per-node lock around each
    call so that :meth:`outgoing` copies the messages before another thread can take the
    next batch, and :meth:`close` never frees a node another thread is using. Calls on
    different nodes run in parallel (ctypes releases the GIL during the C call). Error
    details are per thread, so the exception a thread gets is about its own call.
    """

    _ptr: Optional[Any]
    _lib: ctypes.CDLL
    _free: Callable[[Any], None]
    _lock: threading.Lock

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "create a node with OmniPaxos.from_hocon(path), OmniPaxos.from_hocon_str(text) "
            "or OmniPaxos.from_config(mapping)"
        )

    # -- construction -------------------------------------------------------------------

    @classmethod
    def _create(cls: Type[_T], make: Callable[[ctypes.CDLL, Any], int]) -> _T:
        lib = _ffi.lib()
        out = _ffi.NodePtr()
        _check(lib, make(lib, byref(out)))
        if not out:
            raise OmniPaxosError("the library returned no node and no error")
        node = cls.__new__(cls)
        node._lib = lib
        node._free = lib.omnipaxos_node_free
        node._lock = threading.Lock()
        node._ptr = out
        return node

    @classmethod
    def from_hocon(cls: Type[_T], path: PathLike) -> _T:
        """A node configured by the HOCON file at ``path``.

        Raises :class:`~omnipaxos.ConfigError` for a missing file or a bad configuration,
        a :class:`~omnipaxos.StorageError` when its storage cannot be opened.
        """
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError(f"path must be str, bytes or os.PathLike, not {type(path).__name__}")
        raw = os.fsencode(path)
        if b"\0" in raw:
            raise InvalidArgumentError(
                "path must not contain NUL characters", ResultCode.INVALID_ARGUMENT
            )
        return cls._create(lambda lib, out: lib.omnipaxos_node_from_hocon_file(raw, out))

    @classmethod
    def from_hocon_str(cls: Type[_T], text: Union[str, bytes]) -> _T:
        """A node configured by HOCON ``text``, e.g.
        ``"pid = 1, nodes = [1, 2, 3], election_tick_timeout = 10"``."""
        if isinstance(text, str):
            try:
                raw = text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InvalidArgumentError(
                    f"configuration text is not valid Unicode: {e}", ResultCode.INVALID_ARGUMENT
                ) from None
        elif isinstance(text, bytes):
            raw = text
        else:
            raise TypeError(f"text must be str or bytes, not {type(text).__name__}")
        return cls._create(lambda lib, out: lib.omnipaxos_node_from_hocon_str(raw, len(raw), out))

    @classmethod
    def from_config(cls: Type[_T], config: Mapping[str, Any]) -> _T:
        """A node configured by a mapping with the HOCON keys, e.g.
        ``{"pid": 1, "nodes": [1, 2, 3], "storage": {"type": "memory"}}``.

        The mapping is rendered as JSON (which is valid HOCON); path-like values become
        strings.
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping, not {type(config).__name__}")

        def default(o: Any) -> Any:
            if isinstance(o, os.PathLike):
                return os.fspath(o)
            raise TypeError(f"configuration value {o!r} is not a string, number, list or mapping")

        return cls.from_hocon_str(json.dumps(config, default=default))

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Frees the node. Idempotent; afterwards every method raises ClosedError.

        On persistent storage it first writes what the node owes its storage, the decided
        index included, so that the node reopened reports what was decided."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            ptr, self._ptr = self._ptr, None
            if ptr:
                self._free(ptr)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return getattr(self, "_ptr", None) is None

    def __enter__(self: _T) -> _T:
        self._node()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # No lock: nobody else can hold a reference to an object being finalised.
        ptr = getattr(self, "_ptr", None)
        if ptr:
            self._ptr = None
            self._free(ptr)

    def __repr__(self) -> str:
        if self.closed:
            return "<OmniPaxos closed>"
        try:
            return f"<OmniPaxos pid={self.pid}>"
        except OmniPaxosError:
            return "<OmniPaxos>"

    def __reduce__(self) -> Any:
        raise TypeError("an OmniPaxos node holds a native handle and cannot be pickled")

    def _node(self) -> Any:
        ptr = self._ptr
        if not ptr:
            raise ClosedError("this OmniPaxos node is closed")
        return ptr

    def _call(self, fn: Callable[..., int], *args: Any) -> None:
        with self._lock:
            _check(self._lib, fn(self._node(), *args))

    # -- driving the protocol -----------------------------------------------------------

    def append(self, data: BytesLike) -> None:
        """Proposes ``data`` (copied) as the next log entry.

        At the leader it goes into the next batch; at a follower it is forwarded to the
        leader; with no leader known it waits in a buffer. Raises
        :class:`~omnipaxos.BufferFullError` when that buffer is full (retry later) and
        :class:`~omnipaxos.StoppedError` after a StopSign, and
        :class:`~omnipaxos.InvalidArgumentError` for an entry that cannot fit in one
        message (longer than ``max_message_bytes`` less 128 bytes and its length prefix).
        Being appended is not being decided: watch :attr:`decided_idx` /
        :meth:`read_decided` for the entry.
        """
        raw = _as_bytes(data, "data")
        self._call(self._lib.omnipaxos_append, raw, len(raw))

    def append_many(self, entries: Iterable[BytesLike]) -> int:
        """Proposes every entry of ``entries`` in order, in one call into the library (much
        cheaper than one :meth:`append` per entry for bursts of small entries).

        Returns how many were taken: ``len(entries)``, or fewer when the proposal buffer
        filled up part-way (the rest were not taken; retry them later). Other errors raise
        as :meth:`append` does, and then nothing was taken.
        """
        raws = [_as_bytes(e, "entries[i]") for e in entries]
        count = len(raws)
        lens = (c_size_t * count)(*map(len, raws))
        taken = c_size_t(0)
        with self._lock:
            code = self._lib.omnipaxos_append_batch(
                self._node(), b"".join(raws), lens, count, byref(taken)
            )
        if code == ResultCode.BUFFER_FULL:
            return int(taken.value)
        _check(self._lib, code)
        return int(taken.value)

    def handle_incoming(self, msg: BytesLike) -> None:
        """Handles one message received from a peer (exactly the bytes it sent).

        A rejected message changes nothing and raises :class:`~omnipaxos.MalformedMessageError`,
        :class:`~omnipaxos.MessageTooLargeError`, :class:`~omnipaxos.UnsupportedVersionError`,
        :class:`~omnipaxos.WrongConfigurationError` or :class:`~omnipaxos.UnknownSenderError`.
        """
        raw = _as_bytes(msg, "msg")
        self._call(self._lib.omnipaxos_handle_incoming, raw, len(raw))

    def outgoing(self) -> List[Tuple[int, bytes]]:
        """Takes the messages to send: a list of ``(receiver pid, bytes)``.

        Pending storage writes are committed first, with one exception: a leader on storage
        that fsyncs returns its new entries' messages before it fsyncs them itself, and the
        next call fsyncs. So send what this returns and call it again until it returns an
        empty list: the followers then write while the leader does. The bytes are copied
        out of the library, so the list stays valid.
        """
        lib = self._lib
        arr = ctypes.POINTER(_ffi.COutgoing)()
        count = c_size_t()
        with self._lock:
            _check(lib, lib.omnipaxos_take_outgoing(self._node(), byref(arr), byref(count)))
            out: List[Tuple[int, bytes]] = []
            for i in range(count.value):
                m = arr[i]
                out.append((m.receiver, _copy(m.data, m.len)))
            return out

    def tick(self) -> None:
        """Advances the node's clock by one tick (call it at a steady pace, e.g. every 10 ms)."""
        self._call(self._lib.omnipaxos_tick)

    def election_timeout(self) -> None:
        """Sends a heartbeat to every peer now and applies the election's rules again, without
        advancing time."""
        self._call(self._lib.omnipaxos_election_timeout)

    def fail_recovery(self) -> None:
        """Call once right after creating a node on persistent storage that holds state from
        an earlier run: the node rejoins as a follower and catches up."""
        self._call(self._lib.omnipaxos_fail_recovery)

    def reconnected(self, pid: int) -> None:
        """Tells the node that the link to ``pid`` came back (messages may have been lost)."""
        self._call(self._lib.omnipaxos_reconnected, _u64(pid, "pid"))

    def trim(self, idx: Optional[int] = None) -> None:
        """Trims (compacts) the log up to ``idx`` on every server; ``None`` trims as far as
        possible (everything decided and accepted by every server, whose decided index is
        on disk there: written lazily, within one resend period). Only the leader can
        trim: elsewhere it raises :class:`~omnipaxos.NotLeaderError`, and beyond what can
        be trimmed :class:`~omnipaxos.InvalidArgumentError`."""
        target = _U64_MAX if idx is None else _u64(idx, "idx")
        self._call(self._lib.omnipaxos_trim, target)

    def transfer_leadership(self, pid: int) -> None:
        """Hands the leadership to server ``pid``. Call it at the leader: the target is asked
        to take over at once and leads within a few message delays (watch :attr:`leader`);
        if the request is lost nothing changes and you can call it again. No decided entry
        is lost. At a follower it raises :class:`~omnipaxos.NotLeaderError`; a ``pid`` outside
        the configuration, or a target that is unreachable, not quorum-connected or still
        catching up raises :class:`~omnipaxos.InvalidArgumentError` (nothing changes)."""
        self._call(self._lib.omnipaxos_transfer_leadership, _u64(pid, "pid"))

    def set_leader_priority(self, priority: int) -> None:
        """Sets the leader priority of the ballots this node takes from now on (among servers
        taking over at the same time the higher priority leads). It never deposes a leader
        by itself; :meth:`transfer_leadership` moves the leadership now."""
        if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority < 2**32:
            raise ValueError(f"priority must be an integer in 0..2**32-1, got {priority!r}")
        self._call(self._lib.omnipaxos_set_leader_priority, priority)

    def reconfigure(
        self, next_config_id: int, nodes: Iterable[int], metadata: BytesLike = b""
    ) -> None:
        """Proposes to end this configuration with a StopSign naming the next one: its id
        ``next_config_id``, its servers ``nodes`` (pids) and opaque ``metadata``.

        Call it at the leader (see :attr:`leader`): elsewhere it raises
        :class:`~omnipaxos.NotLeaderError` (the StopSign is not forwarded). The StopSign
        follows every entry appended before the call; from then on :meth:`append` raises
        :class:`~omnipaxos.StoppedError` here, and at every node once it has the StopSign.
        Being proposed is not being decided: watch :attr:`is_stopped` /
        :meth:`decided_stopsign` on any node. If the leader is deposed before a majority
        accepted it, it can be lost (appends then work again at the new leader): propose
        it again there. Starting the next configuration's nodes and moving the log or the
        application state over is the application's job.

        Raises :class:`~omnipaxos.InvalidArgumentError` for no node, pid 0, a pid listed
        twice, ``next_config_id`` equal to this configuration's id, or a StopSign too large
        for ``max_message_bytes``; :class:`~omnipaxos.StoppedError` when a StopSign is
        already in the log; ``TypeError`` for arguments of the wrong type.
        """
        if isinstance(next_config_id, bool):
            raise TypeError("next_config_id must be an int, not bool")
        config_id = operator.index(next_config_id)
        if not 0 <= config_id <= 0xFFFF_FFFF:
            raise InvalidArgumentError(
                f"next_config_id must be in 0..2**32-1, got {config_id}",
                ResultCode.INVALID_ARGUMENT,
            )
        pids = [_u64(p, "nodes[i]") for p in nodes]
        raw = _as_bytes(metadata, "metadata")
        arr = (c_uint64 * len(pids))(*pids)
        self._call(self._lib.omnipaxos_reconfigure, config_id, arr, len(pids), raw, len(raw))

    @property
    def is_stopped(self) -> bool:
        """Whether this configuration is stopped: a StopSign is decided (the last entry of
        the log). After a crash and :meth:`fail_recovery` it may read ``False`` until the
        leader tells the node again; :meth:`append` raises
        :class:`~omnipaxos.StoppedError` meanwhile."""
        out = c_bool()
        self._call(self._lib.omnipaxos_is_stopped, byref(out))
        return bool(out.value)

    def decided_stopsign(self) -> Optional[StopSign]:
        """The decided StopSign (the next configuration), or ``None`` while none is
        decided. It sits at log index :attr:`decided_idx` ``- 1``."""
        lib = self._lib
        found, config_id = c_bool(), c_uint32()
        n_nodes, meta_len = c_size_t(), c_size_t()
        with self._lock:
            node = self._node()
            # Ask for the sizes, then copy into buffers that fit (a decided StopSign never
            # changes, and the node's lock keeps it decided between the two calls).
            _check(
                lib,
                lib.omnipaxos_decided_stopsign(
                    node, byref(found), byref(config_id), None, 0, byref(n_nodes),
                    None, 0, byref(meta_len),
                ),
            )  # fmt: skip
            if not found.value:
                return None
            pids = (c_uint64 * n_nodes.value)()
            meta = ctypes.create_string_buffer(meta_len.value)
            cap_nodes, cap_meta = n_nodes.value, meta_len.value
            _check(
                lib,
                lib.omnipaxos_decided_stopsign(
                    node, byref(found), byref(config_id), pids, cap_nodes, byref(n_nodes),
                    meta, cap_meta, byref(meta_len),
                ),
            )  # fmt: skip
            if not found.value or n_nodes.value > cap_nodes or meta_len.value > cap_meta:
                raise OmniPaxosError("the decided StopSign changed between two calls")
            return StopSign(
                next_config_id=config_id.value,
                nodes=tuple(pids[: n_nodes.value]),
                metadata=meta.raw[: meta_len.value],
            )

    # -- state --------------------------------------------------------------------------

    def _get_u64(self, fn: Callable[..., int]) -> int:
        out = c_uint64()
        self._call(fn, byref(out))
        return out.value

    @property
    def pid(self) -> int:
        """This server's pid."""
        return self._get_u64(self._lib.omnipaxos_pid)

    @property
    def decided_idx(self) -> int:
        """The decided index: entries ``0 .. decided_idx - 1`` are decided (and in this
        node's durable log), as of the last :meth:`outgoing` call; reading it writes nothing.
        It never decreases while the node runs; it is written to disk lazily (and by
        :meth:`close`), so after a crash and :meth:`fail_recovery` it may restart lower until
        the leader brings the node up to date (decided entries never change)."""
        return self._get_u64(self._lib.omnipaxos_decided_idx)

    def _leader(self) -> Tuple[int, Ballot]:
        pid = c_uint64()
        ballot = _ffi.CBallot()
        self._call(self._lib.omnipaxos_leader, byref(pid), byref(ballot))
        return pid.value, Ballot(ballot.n, ballot.priority, ballot.pid)

    @property
    def leader(self) -> Optional[int]:
        """The pid of the leader this node follows (or is), ``None`` when none is known."""
        pid, _ = self._leader()
        return pid or None

    @property
    def ballot(self) -> Optional[Ballot]:
        """The leader's ballot, ``None`` when no leader is known."""
        pid, ballot = self._leader()
        return ballot if pid else None

    @property
    def is_leader(self) -> bool:
        """Whether this node is the leader it knows of."""
        return self.leader == self.pid

    @property
    def is_quorum_connected(self) -> bool:
        """Whether a majority (this node included) answered its heartbeats within the last
        election timeout (false on a new node until one has)."""
        out = c_bool()
        self._call(self._lib.omnipaxos_is_quorum_connected, byref(out))
        return bool(out.value)

    # -- reading the log ----------------------------------------------------------------

    @contextlib.contextmanager
    def _entries(self, fn: Callable[..., int], *args: Any) -> Iterator[Any]:
        """Calls a read function that returns an ``omnipaxos_entries``; yields the handle
        and frees it afterwards."""
        lib = self._lib
        handle = _ffi.EntriesPtr()
        with self._lock:
            _check(lib, fn(self._node(), *args, byref(handle)))
        try:
            yield handle
        finally:
            lib.omnipaxos_entries_free(handle)

    def _read(self, fn: Callable[..., int], *args: Any) -> List[Entry]:
        """Calls a read function and copies the entries out with their indexes and kinds."""
        lib = self._lib
        with self._entries(fn, *args) as handle:
            count = lib.omnipaxos_entries_count(handle)
            first = lib.omnipaxos_entries_first_idx(handle)
            data = c_void_p()
            size = c_size_t()
            kind = c_int()
            out: List[Entry] = []
            for i in range(count):
                _check(lib, lib.omnipaxos_entries_get(handle, i, byref(data), byref(size), byref(kind)))
                raw = _copy(data.value, size.value)
                out.append(Entry(first + i, raw, _kind(kind.value)))
            return out

    def _read_bytes(self, fn: Callable[..., int], *args: Any) -> List[bytes]:
        """Calls a read function and returns the entries' bytes, copied out in one piece."""
        lib = self._lib
        with self._entries(fn, *args) as handle:
            count = lib.omnipaxos_entries_count(handle)
            if not count:
                return []
            data = c_void_p()
            size = c_size_t()
            ends = ctypes.POINTER(c_uint64)()
            _check(lib, lib.omnipaxos_entries_contiguous(handle, byref(data), byref(size), byref(ends)))
            buf = _copy(data.value, size.value)
            offsets = ends[:count]
        return [buf[a:b] for a, b in zip([0, *offsets], offsets)]

    def read_entry(self, idx: int) -> Optional[Entry]:
        """The log position ``idx`` with its kind; ``None`` past the end of the log."""
        i = _u64(idx, "idx")
        try:
            got = self._read(self._lib.omnipaxos_read, i)
        except OmniPaxosError as e:
            if e.code == ResultCode.OUT_OF_RANGE:
                return None
            raise
        return got[0] if got else None

    def read(self, idx: int) -> Optional[bytes]:
        """The bytes of entry ``idx`` (decided or not); ``None`` past the end of the log or
        when the entry was trimmed."""
        entry = self.read_entry(idx)
        if entry is None or entry.kind == EntryKind.TRIMMED:
            return None
        return entry.data

    def read_log(self, from_idx: int, to_idx: int) -> List[Entry]:
        """Log positions ``from_idx .. to_idx - 1`` (decided or not) with their kinds."""
        return self._read(
            self._lib.omnipaxos_read_entries, _u64(from_idx, "from_idx"), _u64(to_idx, "to_idx")
        )

    def read_entries(self, from_idx: int, to_idx: int) -> List[bytes]:
        """The bytes of log entries ``from_idx .. to_idx - 1`` (decided or not).

        Raises :class:`~omnipaxos.OutOfRangeError` when the range goes past the end of the
        log and :class:`~omnipaxos.InvalidArgumentError` for ``from_idx > to_idx``.
        """
        return self._read_bytes(
            self._lib.omnipaxos_read_entries, _u64(from_idx, "from_idx"), _u64(to_idx, "to_idx")
        )

    def read_decided_entries(self, from_idx: int = 0) -> List[Entry]:
        """The decided positions from ``from_idx`` up to :attr:`decided_idx`, with kinds
        (empty when ``from_idx >= decided_idx``)."""
        return self._read(self._lib.omnipaxos_read_decided_suffix, _u64(from_idx, "from_idx"))

    def read_decided(self, from_idx: int = 0) -> List[bytes]:
        """The bytes of the decided entries from ``from_idx`` up to :attr:`decided_idx`
        (empty when ``from_idx >= decided_idx``). Element ``i`` is log index
        ``from_idx + i``, so ``from_idx + len(result)`` is the next index to read."""
        return self._read_bytes(self._lib.omnipaxos_read_decided_suffix, _u64(from_idx, "from_idx"))
