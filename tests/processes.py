"""Finding the processes a test (or the benchmark) started."""
from __future__ import annotations

import os
from pathlib import Path


def descendants(root: int) -> list[int]:
    """Every process below `root` (children run in their own sessions, so walk /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def descendants_matching(root: int, pattern: str) -> list[int]:
    """The processes below `root` whose command line contains `pattern`, in pid order."""
    found = []
    for pid in descendants(root):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if pattern in command:
            found.append(pid)
    return sorted(found)
