"""``irontrack-keygen``: create the Ed25519 key pair once; never overwrite."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..keys import KeyError_, generate_key_files, load_key_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="irontrack-keygen", description=__doc__)
    parser.add_argument("--private-key", type=Path, required=True, help="PEM path (mode 0600)")
    parser.add_argument("--public-key", type=Path, required=True, help="PEM path")
    args = parser.parse_args(argv)
    try:
        written = generate_key_files(args.private_key, args.public_key)
        load_key_files(args.private_key, args.public_key)
    except KeyError_ as error:
        print(f"irontrack-keygen: {error}", file=sys.stderr)
        return 1
    print("generated" if written else "exists")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
