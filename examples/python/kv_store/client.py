#!/usr/bin/env python3
"""A command-line client for the key-value store nodes (standard library only).

    client.py --port 7001 put color blue     # waits until the entry is applied
    client.py --port 7002 get color
    client.py --port 7003 status
    client.py --port 7003 dump
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from framing import request  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("op", choices=["put", "get", "delete", "status", "dump"])
    p.add_argument("key", nargs="?")
    p.add_argument("value", nargs="?")
    args = p.parse_args(argv)
    req = {"op": args.op}
    if args.op in ("put", "get", "delete"):
        if args.key is None or (args.op == "put" and args.value is None):
            p.error(f"{args.op} needs a key" + (" and a value" if args.op == "put" else ""))
        req["key"] = args.key
        if args.op == "put":
            req["value"] = args.value
    answer = request(args.host, args.port, req, timeout=args.timeout)
    print(json.dumps(answer, indent=2, sort_keys=True))
    return 0 if answer.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
