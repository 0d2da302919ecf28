"""Errors raised by the binding.

Every failing call of the C library returns an ``omnipaxos_result`` code; the binding turns
it into an instance of the matching :class:`OmniPaxosError` subclass that carries the code
(:attr:`OmniPaxosError.code`) and the library's detailed message for that call
(``omnipaxos_last_error``, :attr:`OmniPaxosError.message`).

The codes are those of ``include/omnipaxos.h`` and are never renumbered.
"""

from __future__ import annotations

import enum
from typing import Dict, Optional, Type, Union


class ResultCode(enum.IntEnum):
    """The ``omnipaxos_result`` codes of the C API."""

    OK = 0
    NULL_PARAMETER = 1
    INVALID_ARGUMENT = 2
    CONFIG = 3
    MALFORMED_MESSAGE = 4
    MESSAGE_TOO_LARGE = 5
    UNSUPPORTED_VERSION = 6
    WRONG_CONFIGURATION = 7
    UNKNOWN_SENDER = 8
    BUFFER_FULL = 9
    STOPPED = 10
    OUT_OF_RANGE = 11
    STORAGE_IO = 12
    STORAGE_CORRUPTION = 13
    STORAGE_LOCKED = 14
    PANIC = 15
    NOT_LEADER = 16
    STORAGE_MISMATCH = 17


class OmniPaxosError(Exception):
    """Base class of every error raised by the binding.

    Attributes:
        code: the C result code (a :class:`ResultCode`, or a plain ``int`` for a code this
            binding does not know), or ``None`` for errors detected in Python before the
            library was called (a closed node, a missing library).
        message: the detailed message (the library's last error for the failed call, or
            its generic text for the code when it gave none).
    """

    code: Optional[Union[ResultCode, int]]
    message: str

    def __init__(self, message: str, code: Optional[Union[ResultCode, int]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        code = self.code.name if isinstance(self.code, ResultCode) else self.code
        return f"{type(self).__name__}({self.message!r}, code={code})"


class LibraryNotFoundError(OmniPaxosError, ImportError):
    """The shared library ``libomnipaxos`` could not be found or loaded.

    The message lists every path tried and why each failed. Set ``OMNIPAXOS_LIB`` to the
    library's path, or build it with ``cargo build --release`` in the repository.
    """

    def __init__(self, message: str) -> None:
        OmniPaxosError.__init__(self, message, None)


class ClosedError(OmniPaxosError):
    """The node was closed (:meth:`omnipaxos.OmniPaxos.close`); it cannot be used any more."""


class NullParameterError(OmniPaxosError):
    """``OMNIPAXOS_ERR_NULL_PARAMETER``: a required pointer was NULL (a binding bug)."""


class InvalidArgumentError(OmniPaxosError, ValueError):
    """``OMNIPAXOS_ERR_INVALID_ARGUMENT``: a bad length, non-UTF-8 text, a bad range, ...

    Also a :class:`ValueError`; the binding raises it too for an integer argument outside
    ``0 .. 2**64-1``.
    """


class ConfigError(OmniPaxosError):
    """``OMNIPAXOS_ERR_CONFIG``: a missing, unknown or ill-typed key, an invalid value, an
    unreadable configuration file or text that is not HOCON."""


class MalformedMessageError(OmniPaxosError):
    """``OMNIPAXOS_ERR_MALFORMED_MESSAGE``: an incoming message is not one of this library
    (it does not start with the wire format's magic number), or it is truncated, has
    trailing bytes or an invalid body. The node is unchanged."""


class MessageTooLargeError(OmniPaxosError):
    """``OMNIPAXOS_ERR_MESSAGE_TOO_LARGE``: an incoming message exceeds ``max_message_bytes``."""


class UnsupportedVersionError(OmniPaxosError):
    """``OMNIPAXOS_ERR_UNSUPPORTED_VERSION``: the message starts like one of this library but
    its wire-format version is not one this build understands (see
    :func:`omnipaxos.wire_version`): a peer runs another version."""


class WrongConfigurationError(OmniPaxosError):
    """``OMNIPAXOS_ERR_WRONG_CONFIGURATION``: the message belongs to another ``config_id``."""


class UnknownSenderError(OmniPaxosError):
    """``OMNIPAXOS_ERR_UNKNOWN_SENDER``: the sender is not a peer, or the message is not
    addressed to this node."""


class BufferFullError(OmniPaxosError):
    """``OMNIPAXOS_ERR_BUFFER_FULL``: the proposal buffer is full; retry later."""


class StoppedError(OmniPaxosError):
    """``OMNIPAXOS_ERR_STOPPED``: the configuration is stopped: a StopSign is in the log
    (see :meth:`~omnipaxos.OmniPaxos.reconfigure`), so no entry and no other StopSign is
    accepted."""


class OutOfRangeError(OmniPaxosError, IndexError):
    """``OMNIPAXOS_ERR_OUT_OF_RANGE``: an index past the end of the log (also an
    :class:`IndexError`)."""


class StorageError(OmniPaxosError):
    """``OMNIPAXOS_ERR_STORAGE_IO`` (an I/O error, a full disk, an unwritable path), and the
    base class of the other storage errors."""


class StorageCorruptionError(StorageError):
    """``OMNIPAXOS_ERR_STORAGE_CORRUPTION``: the files on disk are damaged."""


class StorageLockedError(StorageError):
    """``OMNIPAXOS_ERR_STORAGE_LOCKED``: the storage path is held by another live node."""


class StorageMismatchError(StorageError):
    """``OMNIPAXOS_ERR_STORAGE_MISMATCH``: the storage directory belongs to another node or
    configuration (the message names both identities); nothing was changed."""


class InternalError(OmniPaxosError):
    """``OMNIPAXOS_ERR_PANIC``: an internal bug of the library, caught at the C boundary.
    Please report it with the message."""


class NotLeaderError(OmniPaxosError):
    """``OMNIPAXOS_ERR_NOT_LEADER``: the call must be made at the leader
    (:meth:`~omnipaxos.OmniPaxos.reconfigure`); the message names the leader when one is
    known (:attr:`~omnipaxos.OmniPaxos.leader` tells it too)."""


#: The exception class raised for each result code.
ERROR_CLASSES: Dict[ResultCode, Type[OmniPaxosError]] = {
    ResultCode.NULL_PARAMETER: NullParameterError,
    ResultCode.INVALID_ARGUMENT: InvalidArgumentError,
    ResultCode.CONFIG: ConfigError,
    ResultCode.MALFORMED_MESSAGE: MalformedMessageError,
    ResultCode.MESSAGE_TOO_LARGE: MessageTooLargeError,
    ResultCode.UNSUPPORTED_VERSION: UnsupportedVersionError,
    ResultCode.WRONG_CONFIGURATION: WrongConfigurationError,
    ResultCode.UNKNOWN_SENDER: UnknownSenderError,
    ResultCode.BUFFER_FULL: BufferFullError,
    ResultCode.STOPPED: StoppedError,
    ResultCode.OUT_OF_RANGE: OutOfRangeError,
    ResultCode.STORAGE_IO: StorageError,
    ResultCode.STORAGE_CORRUPTION: StorageCorruptionError,
    ResultCode.STORAGE_LOCKED: StorageLockedError,
    ResultCode.PANIC: InternalError,
    ResultCode.NOT_LEADER: NotLeaderError,
    ResultCode.STORAGE_MISMATCH: StorageMismatchError,
}


def error_for_code(code: int, message: str) -> OmniPaxosError:
    """The exception for a non-zero result ``code`` with ``message`` (pure: no library call).

    An unknown code gives a plain :class:`OmniPaxosError` that keeps the integer code.
    """
    try:
        known = ResultCode(code)
    except ValueError:
        return OmniPaxosError(message, code)
    if known == ResultCode.OK:
        raise ValueError("result code 0 (OK) is not an error")
    return ERROR_CLASSES[known](message, known)
