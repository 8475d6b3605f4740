"""Summarise a py-spy ``--format raw`` (collapsed stacks) file: top self and total frames.

``python -m benchmarks._profile FILE [N]``
"""

from __future__ import annotations

import sys
from collections import Counter


def summarise(path: str, top: int = 25) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    with open(path) as handle:
        for line in handle:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            samples += count
            frames = stack.split(";")
            own[frames[-1]] += count
            for frame in set(frames):
                total[frame] += count
    lines = [f"{samples} samples", "", "self%   frame"]
    lines += [f"{100 * n / samples:5.1f}  {f}" for f, n in own.most_common(top)]
    lines += ["", "total%  frame"]
    lines += [f"{100 * n / samples:5.1f}  {f}" for f, n in total.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25))
