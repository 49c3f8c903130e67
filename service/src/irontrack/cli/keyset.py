"""``irontrack-keyset``: create and rotate the fleet's JWT keyset file (on the controller).

    init FILE [--import-private-key PEM]   create FILE once (a new signing key, or the given
                                           key of an earlier release as the signing key)
    stage FILE                             add a new key as 'verifying' (phase 1 of a rotation;
                                           keeps an already staged key)
    promote FILE                           the staged key signs, the old one keeps verifying
                                           (phase 2)
    retire [--min-age S] -- FILE KID       remove a verifying key that stopped signing at least
                                           S seconds ago (the longest token lifetime); a kid is
                                           base64url and may start with "-": put "--" before
                                           FILE so it is never read as an option
    prune FILE --min-age S                 retire every key that stopped signing >= S ago
    show FILE                              kids and states, no private key (FILE "-": check a
                                           keyset given on stdin)

Every command prints one JSON object: ``changed``, ``signing`` (kid), ``keys`` (kid, state,
times), and exits 1 with a message on stderr when it refuses. FILE is written atomically,
mode 0600, and never overwritten by ``init``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..keys import KeyError_
from ..keyset import (
    SIGNING,
    VERIFYING,
    Keyset,
    entry_record,
    keyset_from_data,
    load_keyset,
    new_private_pem,
    now,
    read_private_text,
    write_keyset,
)


def _summary(keyset: Keyset, changed: bool, **extra: Any) -> dict[str, Any]:
    keys = []
    for entry in keyset.keys:
        record = entry_record(entry)
        record.pop("private_pem")
        keys.append(record)
    return {"changed": changed, "signing": keyset.signing.kid, "keys": keys, **extra}


def _records(keyset: Keyset) -> list[dict[str, Any]]:
    return [entry_record(entry) for entry in keyset.keys]


def _staged(keyset: Keyset) -> dict[str, Any] | None:
    """The newest key that is verifying and never signed (a rotation's phase 1)."""
    staged = [e for e in keyset.keys if e.state == VERIFYING and e.signing_until is None]
    if not staged:
        return None
    return entry_record(max(staged, key=lambda e: e.created or 0))


def cmd_init(path: Path, import_private_key: Path | None) -> dict:
    if path.exists():
        return _summary(load_keyset(path), False)
    if import_private_key is not None:
        pem = read_private_text(import_private_key, "JWT key file")
    else:
        pem = new_private_pem()
    record = {"state": SIGNING, "created": now(), "private_pem": pem}
    return _summary(write_keyset(path, [record]), True)


def cmd_stage(path: Path) -> dict:
    keyset = load_keyset(path)
    staged = _staged(keyset)
    if staged is not None:
        return _summary(keyset, False, staged=staged["kid"])
    fresh = {"state": VERIFYING, "created": now(), "private_pem": new_private_pem()}
    records = [*_records(keyset), fresh]
    written = write_keyset(path, records)
    return _summary(written, True, staged=written.keys[-1].kid)


def cmd_promote(path: Path) -> dict:
    keyset = load_keyset(path)
    staged = _staged(keyset)
    if staged is None:
        raise KeyError_(f"{path}: no staged key to promote (run `stage` and push it first)")
    at = now()
    records = []
    for record in _records(keyset):
        if record["kid"] == staged["kid"]:
            record["state"] = SIGNING
        elif record["state"] == SIGNING:
            record["state"] = VERIFYING
            record["signing_until"] = at
        records.append(record)
    return _summary(write_keyset(path, records), True, promoted=staged["kid"])


def _retirable(record: dict[str, Any], min_age: int, at: int) -> str | None:
    """Why this key must stay, or None."""
    if record["state"] == SIGNING:
        return "it is the signing key"
    until = record.get("signing_until")
    if until is None:
        return "it has never signed (a staged key) or its signing end is unknown"
    if at - until < min_age:
        return f"it signed until {until}, {at - until} s ago; tokens live up to {min_age} s"
    return None


def cmd_retire(path: Path, kid: str, min_age: int, missing_ok: bool) -> dict:
    keyset = load_keyset(path)
    records = _records(keyset)
    target = [record for record in records if record["kid"] == kid]
    if not target:
        if missing_ok:
            return _summary(keyset, False, retired=[])
        raise KeyError_(f"{path}: no key {kid}")
    reason = _retirable(target[0], min_age, now())
    if reason is not None:
        raise KeyError_(f"{path}: refusing to retire {kid}: {reason}")
    kept = [record for record in records if record["kid"] != kid]
    return _summary(write_keyset(path, kept), True, retired=[kid])


def cmd_prune(path: Path, min_age: int) -> dict:
    keyset = load_keyset(path)
    at = now()
    records = _records(keyset)
    kept = [record for record in records if _retirable(record, min_age, at) is not None]
    retired = [record["kid"] for record in records if record not in kept]
    if not retired:
        return _summary(keyset, False, retired=[])
    return _summary(write_keyset(path, kept), True, retired=retired)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="irontrack-keyset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="create the keyset file once")
    init.add_argument("file", type=Path)
    init.add_argument("--import-private-key", type=Path, help="PEM of an earlier release's key")
    commands.add_parser("stage", help="add a new verifying key").add_argument("file", type=Path)
    commands.add_parser("promote", help="the staged key signs").add_argument("file", type=Path)
    retire = commands.add_parser("retire", help="remove a key no live token needs")
    retire.add_argument("file", type=Path)
    retire.add_argument("kid")
    retire.add_argument("--min-age", type=int, default=0, help="seconds since it last signed")
    retire.add_argument("--missing-ok", action="store_true", help="no such key: not an error")
    prune = commands.add_parser("prune", help="retire every key that stopped signing long ago")
    prune.add_argument("file", type=Path)
    prune.add_argument("--min-age", type=int, required=True, help="the longest token lifetime")
    commands.add_parser("show", help="kids and states").add_argument("file", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "init":
            result = cmd_init(args.file, args.import_private_key)
        elif args.command == "stage":
            result = cmd_stage(args.file)
        elif args.command == "promote":
            result = cmd_promote(args.file)
        elif args.command == "retire":
            result = cmd_retire(args.file, args.kid, args.min_age, args.missing_ok)
        elif args.command == "prune":
            result = cmd_prune(args.file, args.min_age)
        elif str(args.file) == "-":  # show - : check a keyset on stdin (never written anywhere)
            try:
                data = json.loads(sys.stdin.read())
            except ValueError as error:
                raise KeyError_(f"keyset on stdin: not valid JSON: {error}") from None
            result = _summary(keyset_from_data(data, "keyset"), False)
        else:
            result = _summary(load_keyset(args.file), False)
    except KeyError_ as error:
        print(f"irontrack-keyset: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
