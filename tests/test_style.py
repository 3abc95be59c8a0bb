"""The code is formatted and linted by ruff with the settings in pyproject.toml ([tool.ruff])."""

import subprocess
import sys

from realrag_core.config.base import PROJECT_ROOT


def _ruff(*args):
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)


def test_the_code_is_formatted():
    result = _ruff("format", "--check", ".")
    assert result.returncode == 0, "run `.venv/bin/ruff format .`:\n" + result.stdout + result.stderr


def test_the_code_passes_the_linter():
    result = _ruff("check", ".")
    assert result.returncode == 0, "run `.venv/bin/ruff check .`:\n" + result.stdout + result.stderr
