"""The mapping from C result codes to exception classes (pure Python: no library call)."""

from __future__ import annotations

import pytest

import omnipaxos
from omnipaxos import ResultCode
from omnipaxos.errors import ERROR_CLASSES, error_for_code

EXPECTED = {
    1: omnipaxos.NullParameterError,
    2: omnipaxos.InvalidArgumentError,
    3: omnipaxos.ConfigError,
    4: omnipaxos.MalformedMessageError,
    5: omnipaxos.MessageTooLargeError,
    6: omnipaxos.UnsupportedVersionError,
    7: omnipaxos.WrongConfigurationError,
    8: omnipaxos.UnknownSenderError,
    9: omnipaxos.BufferFullError,
    10: omnipaxos.StoppedError,
    11: omnipaxos.OutOfRangeError,
    12: omnipaxos.StorageError,
    13: omnipaxos.StorageCorruptionError,
    14: omnipaxos.StorageLockedError,
    15: omnipaxos.InternalError,
    16: omnipaxos.NotLeaderError,
    17: omnipaxos.StorageMismatchError,
}


def test_codes_match_the_c_header() -> None:
    # Codes are never renumbered: these values are the ABI.
    names = {
        "OK": 0, "NULL_PARAMETER": 1, "INVALID_ARGUMENT": 2, "CONFIG": 3,
        "MALFORMED_MESSAGE": 4, "MESSAGE_TOO_LARGE": 5, "UNSUPPORTED_VERSION": 6,
        "WRONG_CONFIGURATION": 7, "UNKNOWN_SENDER": 8, "BUFFER_FULL": 9, "STOPPED": 10,
        "OUT_OF_RANGE": 11, "STORAGE_IO": 12, "STORAGE_CORRUPTION": 13,
        "STORAGE_LOCKED": 14, "PANIC": 15, "NOT_LEADER": 16, "STORAGE_MISMATCH": 17,
    }  # fmt: skip
    assert {c.name: c.value for c in ResultCode} == names


@pytest.mark.parametrize("code,cls", sorted(EXPECTED.items()))
def test_each_code_has_its_class(code: int, cls: type) -> None:
    err = error_for_code(code, f"detail {code}")
    assert type(err) is cls
    assert isinstance(err, omnipaxos.OmniPaxosError)
    assert err.code == code and isinstance(err.code, ResultCode)
    assert err.message == f"detail {code}" == str(err)
    assert cls.__name__ in repr(err) and ResultCode(code).name in repr(err)


def test_every_error_code_is_mapped() -> None:
    assert set(ERROR_CLASSES) == {c for c in ResultCode if c != ResultCode.OK}


def test_hierarchy() -> None:
    assert issubclass(omnipaxos.StorageCorruptionError, omnipaxos.StorageError)
    assert issubclass(omnipaxos.StorageLockedError, omnipaxos.StorageError)
    assert issubclass(omnipaxos.ClosedError, omnipaxos.OmniPaxosError)
    assert issubclass(omnipaxos.InvalidArgumentError, ValueError)
    assert issubclass(omnipaxos.OutOfRangeError, IndexError)
    assert issubclass(omnipaxos.LibraryNotFoundError, ImportError)
    assert issubclass(omnipaxos.LibraryNotFoundError, omnipaxos.OmniPaxosError)


def test_unknown_code_keeps_the_number() -> None:
    err = error_for_code(99, "from the future")
    assert type(err) is omnipaxos.OmniPaxosError
    assert err.code == 99 and str(err) == "from the future"


def test_ok_is_not_an_error() -> None:
    with pytest.raises(ValueError):
        error_for_code(0, "fine")


def test_errors_can_be_raised_and_caught_as_base() -> None:
    with pytest.raises(omnipaxos.OmniPaxosError) as info:
        raise error_for_code(13, "bad crc")
    assert isinstance(info.value, omnipaxos.StorageError)
    assert info.value.code == ResultCode.STORAGE_CORRUPTION
