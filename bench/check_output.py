#!/usr/bin/env python3
"""Checks a benchmark contender's output against the records it should hold.

    check_output.py EXPECTED NAME PATH...

EXPECTED holds "count id_sum" (written by the benchmark's input generator); each PATH is a
JSON-lines file or a directory holding part files (`part-*`) or `.jsonl` files below it. Every record must have
`amount > 5` and `amount_cents == floor(amount * 100)`, and the records' count and sum of ids
must be the expected ones. Exits non-zero, naming the contender, when anything differs.
"""

import json
import math
import os
import sys


def main() -> int:
    want_count, want_sum = map(int, open(sys.argv[1]).read().split())
    name, paths = sys.argv[2], sys.argv[3:]
    files = []
    for p in paths:
        if os.path.isdir(p):
            # Part files and JSON-lines files anywhere below (not hidden pending ones).
            for root, _, names in sorted(os.walk(p)):
                files += [os.path.join(root, f) for f in sorted(names)
                          if f.startswith("part-") or (f.endswith(".jsonl") and not f.startswith("."))]
        else:
            files.append(p)
    count = total = 0
    for path in files:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if not (r["amount"] > 5 and r["amount_cents"] == math.floor(r["amount"] * 100)):
                    print(f"{name}: a wrong record: {line.strip()}", file=sys.stderr)
                    return 1
                count += 1
                total += r["id"]
    if (count, total) != (want_count, want_sum):
        print(f"{name}: {count} records (id sum {total}), expected {want_count} ({want_sum})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
