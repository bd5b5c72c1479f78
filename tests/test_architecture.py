"""The layering of pyproject.toml's import contracts holds, and the check can fail."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def run_lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_import_contracts_are_kept() -> None:
    result = run_lint()
    assert result.returncode == 0, result.stdout + result.stderr
    kept = re.search(r"Contracts: (\d+) kept, (\d+) broken", result.stdout)
    assert kept is not None and int(kept.group(1)) >= 5 and kept.group(2) == "0", result.stdout


def test_a_broken_contract_fails_the_check(tmp_path: Path) -> None:
    # bridge.idp.assertion really imports bridge.xml.signature: forbidding it must break.
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["bridge"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "xml above idp (wrong on purpose)"\ntype = "layers"\n'
        'layers = ["bridge.xml", "bridge.idp"]\n'
    )
    result = run_lint("--config", str(config))
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "bridge.idp.assertion -> bridge.xml.signature" in result.stdout
