"""Finding and loading the shared library."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

import omnipaxos
from omnipaxos import _ffi

PKG_DIR = Path(_ffi.__file__).resolve().parent


def test_file_names_per_platform() -> None:
    assert _ffi.library_file_names("linux") == ["libomnipaxos.so"]
    assert _ffi.library_file_names("darwin") == ["libomnipaxos.dylib"]
    assert _ffi.library_file_names("win32") == ["omnipaxos.dll"]


def test_env_var_is_the_only_candidate(tmp_path: Path) -> None:
    lib = tmp_path / "custom.so"
    paths, notes = _ffi.candidate_paths(env={"OMNIPAXOS_LIB": str(lib)}, platform="linux")
    assert paths == [lib] and notes == []


def test_search_order(tmp_path: Path) -> None:
    # A fake checkout: repo/Cargo.toml, repo/bindings/python/omnipaxos/, and another repo as cwd.
    repo = tmp_path / "repo"
    pkg = repo / "bindings" / "python" / "omnipaxos"
    pkg.mkdir(parents=True)
    (repo / "Cargo.toml").write_text("[package]\n")
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    (other / "Cargo.toml").write_text("[package]\n")
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    (explicit / "Cargo.toml").write_text("[package]\n")

    paths, notes = _ffi.candidate_paths(
        env={"OMNIPAXOS_REPO": str(explicit)}, package_dir=pkg, cwd=other / "sub", platform="linux"
    )
    assert paths == [
        pkg / "libomnipaxos.so",
        pkg.parent / "libomnipaxos.so",
        explicit.resolve() / "target/release/libomnipaxos.so",
        repo.resolve() / "target/release/libomnipaxos.so",
        other.resolve() / "target/release/libomnipaxos.so",
    ]
    assert notes == []


def test_search_notes_when_no_cargo_toml(tmp_path: Path) -> None:
    pkg = tmp_path / "site-packages" / "omnipaxos"
    pkg.mkdir(parents=True)
    paths, notes = _ffi.candidate_paths(env={}, package_dir=pkg, cwd=tmp_path, platform="linux")
    assert paths == [pkg / "libomnipaxos.so", pkg.parent / "libomnipaxos.so"]
    assert len(notes) == 2 and all("no Cargo.toml" in n for n in notes)


def test_failure_lists_every_path_tried(tmp_path: Path) -> None:
    missing = tmp_path / "missing.so"
    garbage = tmp_path / "garbage.so"
    garbage.write_bytes(b"this is not a shared library")
    with pytest.raises(omnipaxos.LibraryNotFoundError) as info:
        _ffi.load_library([missing, garbage], ["a note"], system_lookup=False)
    text = str(info.value)
    assert f"{missing}: no such file" in text
    assert str(garbage) in text
    assert "a note" in text
    assert "OMNIPAXOS_LIB" in text and "cargo build --release" in text
    assert isinstance(info.value, ImportError) and info.value.code is None


def test_an_unrelated_library_is_rejected(tmp_path: Path) -> None:
    # A real shared library that is not libomnipaxos: the missing symbols are named.
    libc = Path(ctypes.CDLL(None)._name or "")  # type: ignore[attr-defined]
    candidates = [p for p in (Path("/lib/x86_64-linux-gnu/libc.so.6"), Path("/usr/lib/libc.so.6"), libc) if p.is_file()]
    if not candidates:
        pytest.skip("no libc path to load on this system")
    with pytest.raises(omnipaxos.LibraryNotFoundError) as info:
        _ffi.load_library([candidates[0]], system_lookup=False)
    assert "lacks omnipaxos_version" in str(info.value)


def test_the_library_is_loaded_and_declared() -> None:
    lib = _ffi.lib()
    assert os.path.isfile(omnipaxos.library_path())
    for name, restype, argtypes in _ffi.SIGNATURES:
        fn = getattr(lib, name)
        assert fn.restype is restype and fn.argtypes == argtypes, name


def test_bad_omnipaxos_lib_fails_at_first_use(tmp_path: Path) -> None:
    # In a fresh interpreter: the env var is the only place tried, and the error says so.
    code = (
        "import omnipaxos\n"
        "try:\n"
        "    omnipaxos.version()\n"
        "except omnipaxos.LibraryNotFoundError as e:\n"
        "    print('ERR', e)\n"
    )
    env = {**os.environ, "OMNIPAXOS_LIB": str(tmp_path / "nope.so")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ERR" in out.stdout and str(tmp_path / "nope.so") in out.stdout
    assert "find_library" not in out.stdout


def test_found_without_env_var_from_a_checkout() -> None:
    # Without OMNIPAXOS_LIB, from the repository root, the Cargo build is found.
    if not (Path.cwd().resolve() / "Cargo.toml").is_file():
        repo = Path(__file__).resolve().parents[3]
    else:
        repo = Path.cwd()
    if not (repo / "target" / "release" / "libomnipaxos.so").is_file():
        pytest.skip("no target/release/libomnipaxos.so in this checkout")
    env = {k: v for k, v in os.environ.items() if k != "OMNIPAXOS_LIB"}
    out = subprocess.run(
        [sys.executable, "-c", "import omnipaxos; print(omnipaxos.library_path())"],
        env=env, cwd=repo, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).name == "libomnipaxos.so"
