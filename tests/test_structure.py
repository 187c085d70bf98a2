"""The size targets issue 13 set for the package, held: a newcomer reads any module in one sitting
and any function on one screen."""

from __future__ import annotations

import ast

from tests.helpers import REPO

PACKAGE = REPO / "daemon" / "sir_convert_a_lot"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def test_no_module_of_the_package_is_over_450_lines() -> None:
    long = {
        path.relative_to(PACKAGE).as_posix(): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := path.read_text(encoding="utf-8").count("\n")) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_of_the_package_is_over_60_lines() -> None:
    long = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE).as_posix()}:{node.name}"] = lines
    assert long == {}
