"""The error tree and its codes: pure checks, no service."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from shared import errors
from shared.errors import DarkroomError, ErrorCode, RetryLater, StorageError

ROOT = Path(__file__).resolve().parents[2]


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_error_class_carries_a_code_of_the_enum() -> None:
    classes = [DarkroomError, *_subclasses(DarkroomError)]
    assert len(classes) > 20
    for cls in classes:
        assert isinstance(cls.code, ErrorCode), cls


def test_the_tree_lives_in_one_module() -> None:
    outside = [cls for cls in _subclasses(DarkroomError) if cls.__module__ != errors.__name__]
    assert outside == []


def test_codes_serialise_as_their_plain_value() -> None:
    assert ErrorCode.worker_lost == "worker_lost"
    assert str(ErrorCode.quota_exceeded) == "quota_exceeded"
    assert len({code.value for code in ErrorCode}) == len(ErrorCode)


def test_retry_later_reports_its_cause() -> None:
    cause = StorageError("the store said 503")
    retry = RetryLater(2.5, cause)
    assert retry.code == ErrorCode.storage_error
    assert retry.cause is cause and retry.countdown == 2.5
    assert "the store said 503" in retry.message


def _literal_codes(path: Path) -> list[str]:
    """``code="..."`` / ``error_code="..."`` keywords with a string constant: a code spelled
    out instead of taken from ``ErrorCode``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.keyword)
            and node.arg in ("code", "error_code")
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.value.lineno}")
    return found


@pytest.mark.parametrize("package", ["api", "shared", "workers"])
def test_no_code_is_written_as_a_string_literal(package: str) -> None:
    literals = [
        hit for path in sorted((ROOT / package).rglob("*.py")) for hit in _literal_codes(path)
    ]
    assert literals == []


def _readme_statuses() -> dict[str, str]:
    """The README's table of codes: code -> status as written (a number, "job", "its own")."""
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+?) \|", (ROOT / "README.md").read_text(), re.M)
    codes = [code for code, _ in rows if code in ErrorCode.__members__]
    assert len(codes) == len(set(codes)), "a code is listed twice"
    return {code: status for code, status in rows if code in ErrorCode.__members__}


def test_the_readme_gives_each_code_its_one_status() -> None:
    """Clients branch on the status as well as the code: whichever class (or check) answers a
    code, it answers with the status the README gives it."""
    documented = _readme_statuses()
    assert set(documented) == set(ErrorCode)
    for cls in [DarkroomError, *_subclasses(DarkroomError)]:
        if documented[cls.code].isdigit():
            assert cls.http_status == int(documented[cls.code]), cls
    assert documented[ErrorCode.invalid_request] == "422"  # as the API's schema errors
