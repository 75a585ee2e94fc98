"""Print how the installed packages differ from a lock file: `python lock_drift.py requirements.lock`.

Used by `make test-latest` to say which releases are newer than the ones `make test` is pinned to.
"""
from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def installed(skip: set[str]) -> dict[str, str]:
    found = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    return {name: version for name, version in found.items() if name not in skip}


def main(lock: str) -> int:
    pins = locked(Path(lock))
    now = installed(skip={"guided", "pip"})
    changed = sorted(n for n in pins.keys() & now.keys() if pins[n] != now[n])
    print(f"{len(changed)} of {len(pins)} locked packages differ from {lock}:")
    for name in changed:
        print(f"  {name:32s} {pins[name]:>14s} -> {now[name]}")
    for name in sorted(now.keys() - pins.keys()):
        print(f"  {name:32s} {'(not in lock)':>14s} -> {now[name]}")
    for name in sorted(pins.keys() - now.keys()):
        print(f"  {name:32s} {pins[name]:>14s} -> (not installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "requirements.lock"))
