"""``python -m bench variants``: proxy ÷ direct for /ping and /me under each proxy and Granian
setting, on the provisioned local host (issue 15, item 4).

Each variant changes one thing against the host as provisioned, and is measured right after
the change: wrk (the bench's ``-t2 -c50``) through the proxy (HTTPS, unix socket) and directly
(Granian on loopback TCP), on ``/ping`` and on ``/me`` (a real signup and login), so every
ratio comes from back-to-back runs; the rounds alternate the variants so that the machine's
drift spreads over all of them. Proxy variants are edits of the live proxy configuration,
each validated with ``nginx -t -c`` before the reload; Granian variants are runtime drop-ins
of the application's units in ``/run/systemd/system`` (gone at reboot). At the end the
original configuration is put back, the drop-ins are removed, the user is deleted and
``bench/variants.yml`` applies the app and angie roles with the inventory's settings again.

The local host only: it is a container, and the commands go through ``docker exec``
(``IRONTRACK_INSTANCE``). Results: ``results/variants/<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parent.parent
_BESIDE = Path(sys.executable).with_name("ansible-playbook")
ANSIBLE_PLAYBOOK = str(_BESIDE) if _BESIDE.is_file() else "ansible-playbook"
CONF = "/etc/nginx/nginx.conf"
SOCKET = "/run/app/granian.sock"
DIRECT = "http://127.0.0.1:8000"
PROXY = "https://127.0.0.1"
HOST_HEADER = "Host: app.localhost"
Edit = Callable[[str], str]


@dataclass(frozen=True)
class Variant:
    """One change against the host as provisioned: of the proxy's text, of Granian's flags."""

    name: str
    proxy: Edit | None = None
    granian: tuple[str, str] | None = None  # (flag as provisioned, flag in this variant)


def _sub(pattern: str, replacement: str) -> Edit:
    def edit(text: str) -> str:
        changed, count = re.subn(pattern, replacement, text, flags=re.M)
        if count == 0:
            raise SystemExit(f"variant does not apply: no {pattern!r} in the proxy config")
        return changed

    return edit


VARIANTS = (
    Variant("as provisioned"),
    Variant(
        "access_log off",
        proxy=_sub(r"access_log (\S+/access\.log) irontrack [^;]*;", "access_log off;"),
    ),
    Variant(
        "proxy_buffering off",
        proxy=_sub(
            r"^(\s*)proxy_http_version 1\.1;", r"\1proxy_http_version 1.1;\n\1proxy_buffering off;"
        ),
    ),
    Variant("worker_processes 1", proxy=_sub(r"^worker_processes \S+;", "worker_processes 1;")),
    # Only the upstream block's keepalive (8 spaces in), not the clients' (4).
    Variant("no upstream keepalive", proxy=_sub(r"^ {8}keepalive(_requests|_timeout)? \S+;\n", "")),
    Variant(
        "ssl_buffer_size 4k",
        proxy=_sub(
            r"^(\s*)ssl_session_tickets off;", r"\1ssl_session_tickets off;\n\1ssl_buffer_size 4k;"
        ),
    ),
    Variant("granian --runtime-threads 1", granian=("--runtime-threads 2", "--runtime-threads 1")),
    Variant("granian --runtime-mode mt", granian=("--runtime-mode st", "--runtime-mode mt")),
    Variant(
        "granian --backpressure 128",
        granian=("--respawn-failed-workers", "--respawn-failed-workers --backpressure 128"),
    ),
)


def granian_exec_start(unit: str, text: str, change: tuple[str, str]) -> str:
    """The unit's ExecStart (``systemctl cat`` text, continuation lines included) with one
    flag changed, for a drop-in."""
    found = re.search(r"^ExecStart=(?:.*\\\n)*.*\n", text, re.M)
    if found is None or change[0] not in found.group(0):
        raise SystemExit(f"{unit}: no {change[0]!r} in its ExecStart")
    return found.group(0).replace(change[0], change[1])


class Host:
    """Commands on the local host's container."""

    def __init__(self, name: str) -> None:
        self.name = name

    def sh(self, command: str, *, stdin: str | None = None, check: bool = True) -> str:
        done = subprocess.run(  # noqa: S603
            ["docker", "exec", "-i", self.name, "bash", "-c", command],  # noqa: S607
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and done.returncode != 0:
            raise SystemExit(
                f"{self.name}: {command}: exit {done.returncode}: {done.stderr.strip()}"
            )
        return done.stdout

    def wrk(self, url: str, seconds: int, *headers: str) -> float:
        options = " ".join(f"-H {shlex.quote(header)}" for header in headers)
        out = self.sh(f"wrk -t2 -c50 -d{seconds}s {options} {shlex.quote(url)}")
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if errors:
            raise SystemExit(f"{url}: {errors.group(1)} answers that were not 2xx\n{out}")
        found = re.search(r"Requests/sec:\s+([\d.]+)", out)
        if found is None:
            raise SystemExit(f"{url}: no rate in wrk's output\n{out}")
        return float(found.group(1))

    def set_proxy(self, text: str) -> None:
        self.sh(
            f"cat > /tmp/bench-variant.conf && nginx -t -q -c /tmp/bench-variant.conf "
            f"&& cp /tmp/bench-variant.conf {CONF} && rm /tmp/bench-variant.conf "
            "&& systemctl reload nginx",
            stdin=text,
        )
        time.sleep(1)  # the old workers finish

    def units(self) -> list[str]:
        listed = self.sh(
            "systemctl list-units --plain --no-legend --state=active "
            "'irontrack@*.service' irontrack-direct.service"
        )
        return [word for word in listed.split() if word.endswith(".service")]

    def set_granian(self, units: list[str], change: tuple[str, str] | None) -> None:
        for unit in units:
            dropin = f"/run/systemd/system/{unit}.d"
            if change is None:
                self.sh(f"rm -rf {dropin}")
                continue
            exec_start = granian_exec_start(unit, self.sh(f"systemctl cat {unit}"), change)
            self.sh(
                f"mkdir -p {dropin} && cat > {dropin}/bench-variant.conf",
                stdin=f"[Service]\nExecStart=\n{exec_start}",
            )
        self.sh("systemctl daemon-reload && systemctl restart " + " ".join(units))
        for _ in range(120):
            direct = self.sh(f"curl -s -o /dev/null -w '%{{http_code}}' {DIRECT}/ping", check=False)
            socket = self.sh(
                f"curl -s -o /dev/null -w '%{{http_code}}' --unix-socket {SOCKET} http://x/ping",
                check=False,
            )
            if direct == socket == "200":
                return
            time.sleep(0.5)
        raise SystemExit("Granian did not answer /ping after the restart")


def _playbook(args: argparse.Namespace, phase: str) -> None:
    command = [
        ANSIBLE_PLAYBOOK,
        *("-i", args.inventory),
        str(REPO / "bench" / "variants.yml"),
        f"--extra-vars=bench_variants_phase={phase}",
    ]
    if subprocess.run(command, check=False).returncode != 0:  # noqa: S603
        raise SystemExit(f"bench/variants.yml ({phase}) failed")


def _login(host: Host, email: str, password: str) -> str:
    body = shlex.quote(json.dumps({"email": email, "password": password}))
    curl = f"curl -sf --unix-socket {SOCKET} -H 'Content-Type: application/json' -d {body}"
    host.sh(f"{curl} http://x/api/v1/access/signup > /dev/null")
    return json.loads(host.sh(f"{curl} http://x/api/v1/access/login"))["access_token"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--inventory", default="inventories/local")
    parser.add_argument("-d", "--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the variants")
    parser.add_argument(
        "--only", action="append", default=[], help="a variant's name (repeatable); default: all"
    )
    parser.add_argument(
        "--output", type=Path, help="JSON (default results/variants/<UTC time>.json)"
    )


def run(args: argparse.Namespace) -> int:
    chosen = [
        v for v in VARIANTS if not args.only or v.name in args.only or v.name == "as provisioned"
    ]
    unknown = set(args.only) - {v.name for v in VARIANTS}
    if unknown:
        raise SystemExit(
            f"unknown variants: {sorted(unknown)}; known: {[v.name for v in VARIANTS]}"
        )
    host = Host(os.environ.get("IRONTRACK_INSTANCE", "irontrack-local"))
    _playbook(args, "setup")
    email = f"variants-{secrets.token_hex(6)}@bench.irontrack.example.com"
    original = host.sh(f"cat {CONF}")
    units = host.units()
    rows: list[dict[str, float | str | int]] = []
    granian: tuple[str, str] | None = None
    live = original  # the proxy text nginx runs: reloaded only when a variant changes it
    try:
        token = _login(host, email, secrets.token_urlsafe(18))
        cookie = f'Cookie: access_token="{token}"'
        base = original  # as provisioned, rate limits off (bench/variants.yml)
        for round_no in range(1, args.rounds + 1):
            for variant in chosen:
                wanted = variant.proxy(base) if variant.proxy else base
                if wanted != live:
                    host.set_proxy(wanted)
                    live = wanted
                if variant.granian != granian:
                    host.set_granian(units, variant.granian)
                    granian = variant.granian
                row: dict[str, float | str | int] = {"variant": variant.name, "round": round_no}
                row["ping_proxy"] = host.wrk(f"{PROXY}/ping", args.duration, HOST_HEADER)
                row["ping_direct"] = host.wrk(f"{DIRECT}/ping", args.duration)
                row["me_proxy"] = host.wrk(
                    f"{PROXY}/api/v1/access/me", args.duration, HOST_HEADER, cookie
                )
                row["me_direct"] = host.wrk(f"{DIRECT}/api/v1/access/me", args.duration, cookie)
                rows.append(row)
                print(
                    f"round {round_no} {variant.name:30s} /ping {row['ping_proxy']:8.0f} ÷ "
                    f"{row['ping_direct']:8.0f} = {row['ping_proxy'] / row['ping_direct']:.3f}   "
                    f"/me {row['me_proxy']:8.0f} ÷ {row['me_direct']:8.0f} = "
                    f"{row['me_proxy'] / row['me_direct']:.3f}",
                    flush=True,
                )
    finally:
        if granian is not None:
            host.set_granian(units, None)
        if live != original:
            host.set_proxy(original)
        delete = "DELETE FROM users WHERE email = :'email'"
        host.sh(
            f"runuser -u postgres -- psql -X -q -d irontrack -v email={shlex.quote(email)}",
            stdin=delete,
            check=False,
        )
        _playbook(args, "restore")
    print(table(rows))
    output = args.output or REPO / "results" / "variants" / (
        datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ".json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"duration_s": args.duration, "rows": rows}, indent=1) + "\n")
    print(f"figures: {output}")
    return 0


def table(rows: list[dict[str, float | str | int]]) -> str:
    """Markdown: per variant, the median of its rounds' rates and ratios."""
    lines = [
        "| variant | /ping proxy | /ping direct | proxy ÷ direct "
        "| /me proxy | /me direct | proxy ÷ direct |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(str(r["variant"]) for r in rows):
        mine = [r for r in rows if r["variant"] == name]

        def med(key: str, mine: list = mine) -> float:
            return median(float(r[key]) for r in mine)

        ping = median(float(r["ping_proxy"]) / float(r["ping_direct"]) for r in mine)
        me = median(float(r["me_proxy"]) / float(r["me_direct"]) for r in mine)
        lines.append(
            f"| {name} | {med('ping_proxy'):.0f} | {med('ping_direct'):.0f} | {ping:.3f} | "
            f"{med('me_proxy'):.0f} | {med('me_direct'):.0f} | {me:.3f} |"
        )
    return "\n".join(lines)
