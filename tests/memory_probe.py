"""The peak memory a piece of work adds, measured in a fresh Python process.

``growth_mb(script, *args)`` runs ``script`` with ``sys.argv[1:] == args`` after a prelude
that imports ``json``, ``sys``, ``Path`` and defines ``peak_kb()`` (the process's peak
resident memory, VmHWM, in kB). The script takes ``before = peak_kb()`` once its imports and
a warm-up are done, does the work, and ends with ``report(before)``: the growth in MB is
printed as JSON on its last line and returned. Linux only (``/proc/self/status``).
"""

from __future__ import annotations

import json
import subprocess
import sys

PRELUDE = '''
import json, sys
from pathlib import Path

def peak_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

def report(before):
    print(json.dumps({"growth_mb": (peak_kb() - before) / 1024}))
'''


def growth_mb(script: str, *args: str, timeout: float = 600) -> float:
    """The peak growth (MB) ``script`` reports in a fresh process (see the module)."""
    done = subprocess.run([sys.executable, "-c", PRELUDE + script, *args],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2_000:]
    return float(json.loads(done.stdout.strip().splitlines()[-1])["growth_mb"])
