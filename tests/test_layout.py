"""The package's shape: its layering (pyproject's import-linter contracts) and its sizes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pipeline"
MODULE_LINES = 400
FUNCTION_LINES = 60


def test_the_import_contracts_hold():
    # lint-imports sits beside the interpreter in the virtual environment.
    linter = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(linter), str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True, text=True)
    assert "0 broken" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 0


def test_a_contract_is_really_checked(tmp_path):
    """The contracts can fail: a config import in the I/O layer breaks one."""
    copy = tmp_path / "pipeline"
    subprocess.run(["cp", "-r", str(PACKAGE), str(copy)], check=True)
    spy = copy / "io" / "spec.py"
    spy.write_text(spy.read_text() + "\nfrom pipeline.config import Config  # noqa\n")
    linter = Path(sys.executable).parent / "lint-imports"
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([str(linter), str(REPO / "pyproject.toml")], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode != 0
    assert "only cli and stages read the config BROKEN" in done.stdout


def _sizes() -> tuple[dict[str, int], dict[str, int]]:
    modules, functions = {}, {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(REPO))
        text = path.read_text()
        modules[name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions[f"{name}:{node.name}"] = node.end_lineno - node.lineno + 1
    return modules, functions


def test_no_module_over_400_lines_and_no_function_over_60():
    modules, functions = _sizes()
    assert len(modules) > 30 and max(functions.values()) > 30  # the scan saw the package
    assert {m: n for m, n in modules.items() if n > MODULE_LINES} == {}
    assert {f: n for f, n in functions.items() if n > FUNCTION_LINES} == {}
