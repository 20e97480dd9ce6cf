"""mypy on the library against a baseline that may only shrink.

mypy-baseline.txt holds the errors the library had when the check was introduced, one per line as
``path: [code] message`` (no line numbers, so edits elsewhere in a file do not disturb it). The
check fails when mypy reports an error the baseline does not hold (a new one), and when the
baseline holds errors mypy no longer reports (fixed ones: shrink it with ``make mypy-baseline``).

    python tools/mypy_baseline.py            check (CI: make check)
    python tools/mypy_baseline.py --update   rewrite the baseline; refuses to add errors
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "mypy-baseline.txt"
ERROR = re.compile(r"^(?P<path>[^:\n]+):\d+(?::\d+)?: error: (?P<message>.*?)\s+\[(?P<code>[a-z-]+)\]$")
HEADER = "# mypy errors of scripts/aoideft not fixed yet: may only shrink (tools/mypy_baseline.py)\n"


def normalise(mypy_output: str) -> Counter[str]:
    """mypy's error lines as ``path: [code] message`` with their counts; notes and summaries dropped."""
    return Counter(f"{m['path']}: [{m['code']}] {m['message']}" for m in map(ERROR.match, mypy_output.splitlines()) if m)


def read_baseline(text: str) -> Counter[str]:
    return Counter(line for line in text.splitlines() if line and not line.startswith("#"))


def compare(current: Counter[str], baseline: Counter[str]) -> tuple[list[str], list[str]]:
    """(new errors, fixed errors), each repeated as often as its count differs."""
    return sorted((current - baseline).elements()), sorted((baseline - current).elements())


def run_mypy() -> str:
    proc = subprocess.run([sys.executable, "-m", "mypy", "scripts/aoideft"], cwd=REPO, capture_output=True, text=True,
                          check=False)
    if proc.returncode not in (0, 1) or "error: " in proc.stderr:  # 2: mypy itself failed
        raise SystemExit(f"mypy failed to run ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def main(argv: list[str]) -> int:
    current = normalise(run_mypy())
    baseline = read_baseline(BASELINE.read_text()) if BASELINE.is_file() else Counter()
    new, fixed = compare(current, baseline)
    if "--update" in argv:
        if new and BASELINE.is_file():
            print("refusing to add errors to the baseline; fix these:\n  " + "\n  ".join(new), file=sys.stderr)
            return 1
        BASELINE.write_text(HEADER + "".join(f"{line}\n" for line in sorted(current.elements())))
        print(f"mypy-baseline.txt: {sum(current.values())} errors ({len(fixed)} fixed since the last update)")
        return 0
    if new:
        print("mypy: new errors (not in mypy-baseline.txt):\n  " + "\n  ".join(new), file=sys.stderr)
    if fixed:
        print("mypy: fixed errors still in mypy-baseline.txt; shrink it with `make mypy-baseline`:\n  "
              + "\n  ".join(fixed), file=sys.stderr)
    if not new and not fixed:
        print(f"mypy: {sum(current.values())} errors, all in the baseline")
    return 1 if new or fixed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
