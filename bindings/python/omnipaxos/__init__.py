"""Python bindings for libomnipaxos: the Omni-Paxos consensus protocol as a library.

A replicated log that stays live under partial network partitions. Each server of a
cluster holds an :class:`OmniPaxos` node; the node does no I/O: you tick it, hand it the
messages its peers sent, send the messages it returns, append entries and read the decided
log::

    import omnipaxos

    with omnipaxos.OmniPaxos.from_hocon_str("pid = 1, nodes = [1, 2, 3]") as node:
        node.append(b"hello")
        for receiver, data in node.outgoing():
            ...  # send `data` to server `receiver`, which calls handle_incoming(data)
        node.tick()
        print(node.decided_idx, node.leader, node.read_decided())

The package is pure Python over ``ctypes``; it needs the shared library ``libomnipaxos``
(see :mod:`omnipaxos._ffi` for where it is looked up; ``OMNIPAXOS_LIB`` overrides).

Errors: every failure raises a subclass of :class:`OmniPaxosError` that carries the C
result code (``.code``) and the library's message for the failed call (``.message``).

Threads: a node may be shared between threads; calls on one node are serialised (see
:class:`OmniPaxos`).
"""

from .errors import (
    BufferFullError,
    ClosedError,
    ConfigError,
    InternalError,
    InvalidArgumentError,
    LibraryNotFoundError,
    MalformedMessageError,
    MessageTooLargeError,
    NotLeaderError,
    NullParameterError,
    OmniPaxosError,
    OutOfRangeError,
    ResultCode,
    StorageCorruptionError,
    StorageError,
    StorageLockedError,
    StorageMismatchError,
    StoppedError,
    UnknownSenderError,
    UnsupportedVersionError,
    WrongConfigurationError,
)
from .node import (
    Ballot,
    Entry,
    EntryKind,
    MessageHeader,
    OmniPaxos,
    StopSign,
    library_path,
    message_header,
    strerror,
    version,
    wire_version,
)

#: The version of this Python package (the library's is :func:`version`).
__version__ = "0.1.0"

__all__ = [
    "Ballot",
    "BufferFullError",
    "ClosedError",
    "ConfigError",
    "Entry",
    "EntryKind",
    "InternalError",
    "InvalidArgumentError",
    "LibraryNotFoundError",
    "MalformedMessageError",
    "MessageHeader",
    "MessageTooLargeError",
    "NotLeaderError",
    "NullParameterError",
    "OmniPaxos",
    "OmniPaxosError",
    "OutOfRangeError",
    "ResultCode",
    "StopSign",
    "StorageCorruptionError",
    "StorageError",
    "StorageLockedError",
    "StorageMismatchError",
    "StoppedError",
    "UnknownSenderError",
    "UnsupportedVersionError",
    "WrongConfigurationError",
    "__version__",
    "library_path",
    "message_header",
    "strerror",
    "version",
    "wire_version",
]
