"""Finding and loading ``libomnipaxos`` and declaring its C functions for ctypes.

The library is looked up in this order; the first path that loads wins:

1. ``OMNIPAXOS_LIB``: when set, the path of the library, and the only place tried.
2. A library next to the package: in the ``omnipaxos`` package directory, or in the
   directory that holds it (copy ``libomnipaxos.so`` there before ``pip install``).
3. A Cargo build: ``<repo>/target/release/libomnipaxos.so`` where ``<repo>`` is a directory
   holding ``Cargo.toml``, searched from ``OMNIPAXOS_REPO`` (when set), then upwards from the
   package's own directory (a checkout used without installing), then upwards from the
   current directory (a checkout with the package installed in a virtualenv).
4. The system's library path (``ctypes.util.find_library("omnipaxos")``).

When nothing loads, :class:`~omnipaxos.errors.LibraryNotFoundError` (an ``ImportError``)
lists every path tried and why each failed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from ctypes import (
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from .errors import LibraryNotFoundError

# ---------------------------------------------------------------------------------------
# C types
# ---------------------------------------------------------------------------------------


class NodeHandle(Structure):
    """Opaque ``omnipaxos_node``; only ever used through a pointer."""


class EntriesHandle(Structure):
    """Opaque ``omnipaxos_entries``; only ever used through a pointer."""


class COutgoing(Structure):
    """``omnipaxos_outgoing``: one message to send."""

    _fields_ = [("receiver", c_uint64), ("data", c_void_p), ("len", c_size_t)]


class CBallot(Structure):
    """``omnipaxos_ballot``."""

    _fields_ = [("n", c_uint32), ("priority", c_uint32), ("pid", c_uint64)]


NodePtr = POINTER(NodeHandle)
EntriesPtr = POINTER(EntriesHandle)

# Enums are passed as C ``int`` (the size of a C enum on every supported platform).
c_result = c_int
c_entry_kind = c_int

#: ``(name, restype, argtypes)`` for every function of the C API. Input byte buffers
#: (``const uint8_t *``) are declared as ``c_char_p`` (same ABI), so ``bytes`` pass without
#: a copy; ``const uint8_t **`` out-parameters as ``void **``.
SIGNATURES: List[Tuple[str, Any, List[Any]]] = [
    ("omnipaxos_version", c_char_p, []),
    ("omnipaxos_wire_version", c_uint32, []),
    ("omnipaxos_strerror", c_char_p, [c_result]),
    (
        "omnipaxos_message_header",
        c_result,
        [c_char_p, c_size_t, POINTER(c_uint32), POINTER(c_uint64), POINTER(c_uint64)],
    ),
    ("omnipaxos_last_error", c_size_t, [c_char_p, c_size_t]),
    ("omnipaxos_node_from_hocon_file", c_result, [c_char_p, POINTER(NodePtr)]),
    ("omnipaxos_node_from_hocon_str", c_result, [c_char_p, c_size_t, POINTER(NodePtr)]),
    ("omnipaxos_node_free", None, [NodePtr]),
    ("omnipaxos_append", c_result, [NodePtr, c_char_p, c_size_t]),
    (
        "omnipaxos_append_batch",
        c_result,
        [NodePtr, c_char_p, POINTER(c_size_t), c_size_t, POINTER(c_size_t)],
    ),
    ("omnipaxos_handle_incoming", c_result, [NodePtr, c_char_p, c_size_t]),
    (
        "omnipaxos_take_outgoing",
        c_result,
        [NodePtr, POINTER(POINTER(COutgoing)), POINTER(c_size_t)],
    ),
    ("omnipaxos_tick", c_result, [NodePtr]),
    ("omnipaxos_election_timeout", c_result, [NodePtr]),
    ("omnipaxos_decided_idx", c_result, [NodePtr, POINTER(c_uint64)]),
    ("omnipaxos_read", c_result, [NodePtr, c_uint64, POINTER(EntriesPtr)]),
    (
        "omnipaxos_read_entries",
        c_result,
        [NodePtr, c_uint64, c_uint64, POINTER(EntriesPtr)],
    ),
    ("omnipaxos_read_decided_suffix", c_result, [NodePtr, c_uint64, POINTER(EntriesPtr)]),
    ("omnipaxos_entries_count", c_size_t, [EntriesPtr]),
    ("omnipaxos_entries_first_idx", c_uint64, [EntriesPtr]),
    (
        "omnipaxos_entries_get",
        c_result,
        [EntriesPtr, c_size_t, POINTER(c_void_p), POINTER(c_size_t), POINTER(c_entry_kind)],
    ),
    (
        "omnipaxos_entries_contiguous",
        c_result,
        [EntriesPtr, POINTER(c_void_p), POINTER(c_size_t), POINTER(POINTER(c_uint64))],
    ),
    ("omnipaxos_entries_free", None, [EntriesPtr]),
    ("omnipaxos_leader", c_result, [NodePtr, POINTER(c_uint64), POINTER(CBallot)]),
    ("omnipaxos_pid", c_result, [NodePtr, POINTER(c_uint64)]),
    ("omnipaxos_is_quorum_connected", c_result, [NodePtr, POINTER(c_bool)]),
    ("omnipaxos_fail_recovery", c_result, [NodePtr]),
    ("omnipaxos_reconnected", c_result, [NodePtr, c_uint64]),
    ("omnipaxos_trim", c_result, [NodePtr, c_uint64]),
    ("omnipaxos_transfer_leadership", c_result, [NodePtr, c_uint64]),
    ("omnipaxos_set_leader_priority", c_result, [NodePtr, c_uint32]),
    (
        "omnipaxos_reconfigure",
        c_result,
        [NodePtr, c_uint32, POINTER(c_uint64), c_size_t, c_char_p, c_size_t],
    ),
    ("omnipaxos_is_stopped", c_result, [NodePtr, POINTER(c_bool)]),
    (
        "omnipaxos_decided_stopsign",
        c_result,
        [
            NodePtr,
            POINTER(c_bool),
            POINTER(c_uint32),
            POINTER(c_uint64),
            c_size_t,
            POINTER(c_size_t),
            c_void_p,
            c_size_t,
            POINTER(c_size_t),
        ],
    ),
]

# ---------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------


def library_file_names(platform: Optional[str] = None) -> List[str]:
    """The file names the shared library has on ``platform`` (default: this one)."""
    platform = sys.platform if platform is None else platform
    if platform.startswith("win"):
        return ["omnipaxos.dll"]
    if platform == "darwin":
        return ["libomnipaxos.dylib"]
    return ["libomnipaxos.so"]


def _ancestors(start: Path) -> List[Path]:
    start = start.resolve()
    return [start, *start.parents]


def _cargo_roots(start: Path) -> List[Path]:
    """Directories at or above ``start`` that hold a ``Cargo.toml``, nearest first."""
    return [d for d in _ancestors(start) if (d / "Cargo.toml").is_file()]


def candidate_paths(
    env: Optional[Mapping[str, str]] = None,
    package_dir: Optional[Path] = None,
    cwd: Optional[Path] = None,
    platform: Optional[str] = None,
) -> Tuple[List[Path], List[str]]:
    """The library paths to try, in order, and notes on searches that found no candidate.

    Arguments default to the real environment, this package's directory and the current
    directory; tests pass their own. ``OMNIPAXOS_LIB``, when set, is the only candidate.
    """
    env = os.environ if env is None else env
    names = library_file_names(platform)
    explicit = env.get("OMNIPAXOS_LIB")
    if explicit:
        return [Path(explicit)], []

    pkg = Path(__file__).resolve().parent if package_dir is None else package_dir
    paths: List[Path] = [pkg / n for n in names] + [pkg.parent / n for n in names]
    notes: List[str] = []

    starts: List[Tuple[str, Path]] = []
    repo = env.get("OMNIPAXOS_REPO")
    if repo:
        starts.append(("OMNIPAXOS_REPO", Path(repo)))
    starts.append(("the package directory", pkg))
    starts.append(("the current directory", Path.cwd() if cwd is None else cwd))
    for label, start in starts:
        roots = _cargo_roots(start)
        if not roots:
            notes.append(f"no Cargo.toml in {start} or any parent (searched from {label})")
        for root in roots:
            paths.extend(root / "target" / "release" / n for n in names)

    # De-duplicate, keeping the first occurrence.
    seen = set()
    unique: List[Path] = []
    for p in paths:
        key = str(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, notes


def _declare(lib: ctypes.CDLL, where: str) -> None:
    missing = []
    for name, restype, argtypes in SIGNATURES:
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise LibraryNotFoundError(
            f"{where} is not a compatible libomnipaxos: it lacks {', '.join(missing)} "
            "(an older or unrelated build?)"
        )


def load_library(
    paths: Sequence[Path], notes: Sequence[str] = (), system_lookup: bool = True
) -> Tuple[ctypes.CDLL, str]:
    """Loads the first of ``paths`` that works; returns the library and where it came from.

    Raises :class:`LibraryNotFoundError` listing every path tried when none loads.
    """
    tried: List[str] = []
    for path in paths:
        if not path.exists():
            tried.append(f"{path}: no such file")
            continue
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as e:
            tried.append(f"{path}: {e}")
            continue
        try:
            _declare(lib, str(path))
        except LibraryNotFoundError as e:
            tried.append(f"{path}: {e}")
            continue
        return lib, str(path)
    if system_lookup:
        found = ctypes.util.find_library("omnipaxos")
        if found is None:
            tried.append("system library path (ctypes.util.find_library('omnipaxos')): not found")
        else:
            try:
                lib = ctypes.CDLL(found)
                _declare(lib, found)
                return lib, found
            except (OSError, LibraryNotFoundError) as e:
                tried.append(f"{found} (system library path): {e}")
    lines = "\n  ".join([*tried, *notes])
    raise LibraryNotFoundError(
        "could not load libomnipaxos. Build it with `cargo build --release` in the "
        "repository or set OMNIPAXOS_LIB to the library's path. Tried:\n  " + lines
    )


_lock = threading.Lock()
_loaded: Optional[Tuple[ctypes.CDLL, str]] = None


def lib() -> ctypes.CDLL:
    """The loaded library (found and loaded on first use; cached)."""
    global _loaded
    loaded = _loaded
    if loaded is None:
        with _lock:
            if _loaded is None:
                paths, notes = candidate_paths()
                system = not os.environ.get("OMNIPAXOS_LIB")
                _loaded = load_library(paths, notes, system_lookup=system)
            loaded = _loaded
    return loaded[0]


def library_path() -> str:
    """Where the loaded library came from (loads it if needed)."""
    lib()
    assert _loaded is not None
    return _loaded[1]
