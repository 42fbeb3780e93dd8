"""The committed tokenizer cases (read by the C++ tokenizer test) are what the reference tokenizer gives."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_cases_are_current(tmp_path: Path) -> None:
    out = tmp_path / "cases.json"
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_tokenizer_cases.py"), "--out", str(out)], check=True)
    assert out.read_text(encoding="utf-8") == (ROOT / "tests" / "data" / "tokenizer_cases.json").read_text(
        encoding="utf-8")
