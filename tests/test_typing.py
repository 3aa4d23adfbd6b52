"""mypy --strict on typing_jwt_required.py, with negative controls.

mypy runs in this process with its default cache, ``.mypy_cache`` in the repository
root, which ``mypy`` and ``scripts/dev.py test`` also use. With a cold cache the
first run takes about ten seconds. Later runs take well under one.
"""

from __future__ import annotations

import re
from pathlib import Path

import mypy.api
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKED_MODULE = REPO_ROOT / "tests" / "typing_jwt_required.py"
DECORATOR_IMPORT = "from flask_refresh import jwt_required\n"

#: A stand-in for jwt_required with the signature a careless decorator has.
ERASING_STUB = """\
from collections.abc import Callable
from typing import Any


def jwt_required(
    *, optional: bool = False, fresh: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    raise NotImplementedError
"""

WRONG_ASSERT_TYPE = """\
from typing import assert_type

from flask_refresh import jwt_required


@jwt_required()
def count() -> int:
    return 1


assert_type(count(), str)
"""


def run_mypy(path: Path) -> tuple[int, list[str]]:
    """Run ``mypy --strict`` on one file and return its status and error lines."""
    stdout, stderr, status = mypy.api.run(
        [str(path), "--strict", "--python-version", "3.11", "--no-error-summary"]
    )
    assert stderr == ""
    errors = [line for line in stdout.splitlines() if ": error: " in line]
    return status, errors


def error_lines(errors: list[str], path: Path) -> set[int]:
    """Return the line numbers of ``path`` that the errors point at.

    Only the file name is matched. For a module whose content is unchanged, mypy
    reuses its cached result, which names the path of an earlier run's temporary
    directory.
    """
    pattern = re.compile(rf"^(?:.*[/\\])?{re.escape(path.name)}:(\d+): error: ")
    return {int(match.group(1)) for error in errors if (match := pattern.match(error))}


def check_lines(source: str) -> set[int]:
    """Return the line numbers of the checks in ``check_signatures``."""
    lines = source.splitlines()
    start = next(
        number for number, line in enumerate(lines) if "def check_signatures" in line
    )
    return {
        number + 1
        for number, line in enumerate(lines)
        if number > start and ("assert_type(" in line or "type: ignore" in line)
    }


@pytest.fixture(autouse=True)
def repository_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # mypy finds flask_refresh in the current directory and keeps its cache there.
    monkeypatch.chdir(REPO_ROOT)


def test_decorated_views_type_check() -> None:
    status, errors = run_mypy(CHECKED_MODULE)

    assert errors == []
    assert status == 0


def test_wrong_assert_type_reported(tmp_path: Path) -> None:
    path = tmp_path / "wrong_assert_type.py"
    path.write_text(WRONG_ASSERT_TYPE)

    status, errors = run_mypy(path)

    assert status == 1
    assert len(errors) == 1, errors
    assert errors[0].endswith(
        'error: Expression is of type "int", not "str"  [assert-type]'
    )
    assert error_lines(errors, path) == {11}


def test_erased_signature_fails_every_check(tmp_path: Path) -> None:
    # The same checks against a decorator that returns Callable[..., Any]: each
    # one must report an error, or it would not notice a lost signature.
    source = CHECKED_MODULE.read_text()
    assert DECORATOR_IMPORT in source
    path = tmp_path / "erased_jwt_required.py"
    path.write_text(
        source.replace(DECORATOR_IMPORT, "from erasing_stub import jwt_required\n")
    )
    (tmp_path / "erasing_stub.py").write_text(ERASING_STUB)

    status, errors = run_mypy(path)

    expected = check_lines(source)
    assert len(expected) == 9
    assert status == 1
    assert error_lines(errors, path) == expected, errors
    assert any("[assert-type]" in error for error in errors)
    assert any("[unused-ignore]" in error for error in errors)
