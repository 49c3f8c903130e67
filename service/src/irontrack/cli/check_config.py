"""``irontrack-check-config``: load and validate the settings and the JWT keyset; exit 1 if bad."""

from __future__ import annotations

import argparse
import sys

from ..keys import KeyError_
from ..keyset import load_configured_keyset
from ..settings import ConfigError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="irontrack-check-config", description=__doc__)
    parser.add_argument(
        "--no-keys", action="store_true", help="do not check that the JWT key files load"
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        if not args.no_keys and not settings.jwt_generate_dev_keys:
            keyset = load_configured_keyset(
                settings.jwt_keyset_path,
                settings.jwt_private_key_path,
                settings.jwt_public_key_path,
            )
            print(
                f"JWT keyset: signing {keyset.signing.kid}, {len(keyset.keys) - 1} more verifying"
            )
    except (ConfigError, KeyError_) as error:
        print(f"irontrack-check-config: {error}", file=sys.stderr)
        return 1
    print(
        f"irontrack configuration OK (hash_workers={settings.hash_workers}, "
        f"argon2 t={settings.argon2_time_cost} m={settings.argon2_memory_cost} "
        f"p={settings.argon2_parallelism}, db_pool={settings.db_pool_size}"
        f"+{settings.db_max_overflow})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
