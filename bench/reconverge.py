"""``python -m bench reconverge``: re-run the production playbook on a provisioned host, timed.

Target: ≤ 60 s wall with 0 changed. Runs ``ansible-playbook -i INVENTORY playbooks/site.yml``
as an operator re-runs it, with the ``ansible.posix.json`` stdout callback, prints the wall
time, the PLAY RECAP counts, the slowest tasks and the time per role with the target's
verdict, and stores them in ``results/reconverge/<UTC time>.json``. The host must be
converged already (``make up``): on a converged host the run changes nothing, which is half
of what it checks.

``--floor N`` then times N tasks of modules that change nothing (``command: true``, a ``stat``,
a ``file`` on an existing directory) on the same hosts through the same connection: the least a
task run costs there, whatever it does. That cost times the play's task runs on its busiest
host is the least the play can take: when it exceeds the target, the target needs fewer task
runs, not faster ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .cpu import children_cpu_seconds

REPO = Path(__file__).resolve().parent.parent
MAX_SECONDS = 60.0
# The ansible-playbook of this interpreter's environment (the worktree's .venv), else PATH's.
_BESIDE = Path(sys.executable).with_name("ansible-playbook")
ANSIBLE_PLAYBOOK = str(_BESIDE) if _BESIDE.is_file() else "ansible-playbook"


@dataclass
class Reconverge:
    """What one re-converge did: counts per host and the time each task took."""

    seconds: float
    stats: dict[str, dict[str, int]]
    tasks: list[tuple[str, float]] = field(default_factory=list)
    changed_tasks: list[str] = field(default_factory=list)
    # Task results that ran (not skipped) per host, each item of a loop counted: close to the
    # number of module runs (asserts, set_fact and debug count too), what each re-converge
    # pays for one by one.
    runs: int = 0
    # CPU seconds ansible-playbook and its workers used on the controller: unlike the wall
    # time, barely moved by other load on the machine.
    controller_cpu: float | None = None
    # Task runs on the host that ran the most (see ``runs``): what one host waits for.
    busiest_runs: int = 0
    # Seconds a task run of a module that does nothing costs here (``--floor``), if measured.
    per_run_floor: float | None = None

    @property
    def floor(self) -> float | None:
        """The least the play's task runs can take on this connection (seconds)."""
        if self.per_run_floor is None:
            return None
        return self.busiest_runs * self.per_run_floor

    def total(self, key: str) -> int:
        return sum(int(host.get(key, 0)) for host in self.stats.values())

    @property
    def changed(self) -> int:
        return self.total("changed")

    @property
    def met(self) -> bool:
        clean = self.total("failures") == 0 and self.total("unreachable") == 0
        return clean and self.changed == 0 and self.seconds <= MAX_SECONDS

    def top(self, count: int) -> list[tuple[str, float]]:
        return sorted(self.tasks, key=lambda task: -task[1])[:count]

    def roles(self) -> list[tuple[str, float]]:
        """Seconds per role (tasks outside a role under their play's own name: ``-``)."""
        spent: dict[str, float] = defaultdict(float)
        for name, seconds in self.tasks:
            role, sep, _ = name.partition(" : ")
            spent[role if sep else "-"] += seconds
        return sorted(spent.items(), key=lambda item: -item[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "controller_cpu_s": None
            if self.controller_cpu is None
            else round(self.controller_cpu, 1),
            "changed": self.changed,
            "target": {"max_seconds": MAX_SECONDS, "changed": 0, "met": self.met},
            "stats": self.stats,
            "changed_tasks": self.changed_tasks,
            "runs": self.runs,
            "busiest_host_runs": self.busiest_runs,
            "floor": None
            if self.floor is None
            else {
                "per_run_s": round(self.per_run_floor or 0.0, 3),
                "play_s": round(self.floor, 1),
            },
            "tasks": [[name, round(seconds, 3)] for name, seconds in self.tasks],
        }


def _seconds(duration: dict[str, str]) -> float:
    if not duration.get("start") or not duration.get("end"):
        return 0.0
    start = datetime.fromisoformat(duration["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(duration["end"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def parse(document: dict[str, Any], seconds: float) -> Reconverge:
    """The ``ansible.posix.json`` callback's document → counts and task times."""
    tasks = [
        (task["task"]["name"], _seconds(task["task"].get("duration") or {}))
        for play in document.get("plays", [])
        for task in play.get("tasks", [])
    ]
    changed = [
        f"{task['task']['name']} ({host})"
        for play in document.get("plays", [])
        for task in play.get("tasks", [])
        for host, result in (task.get("hosts") or {}).items()
        if result.get("changed")
    ]
    per_host: dict[str, int] = defaultdict(int)
    for play in document.get("plays", []):
        for task in play.get("tasks", []):
            for host, result in (task.get("hosts") or {}).items():
                per_host[host] += _runs(result)
    return Reconverge(
        seconds=seconds,
        stats=document.get("stats", {}),
        tasks=tasks,
        changed_tasks=changed,
        runs=sum(per_host.values()),
        busiest_runs=max(per_host.values(), default=0),
    )


def _runs(result: dict[str, Any]) -> int:
    """1 for a task result that ran, its items that ran for a loop, 0 when skipped."""
    items = result.get("results")
    if isinstance(items, list):
        return sum(1 for item in items if isinstance(item, dict) and not item.get("skipped"))
    return 0 if result.get("skipped") else 1


def report(result: Reconverge, command: str, top: int) -> str:
    verdict = "met" if result.met else "MISSED"
    recap = ", ".join(
        f"{key} {result.total(key)}" for key in ("ok", "changed", "failures", "unreachable")
    )
    lines = [
        f"re-converge: {result.seconds:.1f} s wall, {recap} ({command})",
        *(
            [f"controller CPU: {result.controller_cpu:.1f} s (ansible-playbook and its workers)"]
            if result.controller_cpu is not None
            else []
        ),
        f"target re-converge ≤ {MAX_SECONDS:.0f} s with 0 changed: {verdict}",
        *(f"  changed: {name}" for name in result.changed_tasks),
        f"tasks: {len(result.tasks)} in the play, {result.runs} task runs (per host, not"
        " skipped, each loop item counted)",
        f"slowest {top} of {len(result.tasks)} tasks:",
        *(f"  {seconds:7.2f} s  {name}" for name, seconds in result.top(top)),
        "per role: " + ", ".join(f"{role} {seconds:.1f} s" for role, seconds in result.roles()),
    ]
    if result.floor is not None and result.per_run_floor is not None:
        lines.append(
            f"floor: a task run of a module that does nothing costs {result.per_run_floor:.3f} s"
            f" here; the busiest host's {result.busiest_runs} task runs take ≥ {result.floor:.0f} s"
            + (
                f": above the target, which needs fewer task runs (≤ "
                f"{int(MAX_SECONDS / result.per_run_floor)}), not faster ones"
                if result.floor > MAX_SECONDS
                else ""
            )
        )
    return "\n".join(lines)


FLOOR_TASKS = (
    '- name: "Run a command that does nothing ({n})"\n'
    '  ansible.builtin.command: "true"\n'
    "  changed_when: false\n",
    '- name: "Look at a file ({n})"\n  ansible.builtin.stat:\n    path: /\n',
    '- name: "Keep a directory as it is ({n})"\n'
    "  ansible.builtin.file:\n    path: /\n    state: directory\n",
)


def floor_playbook(tasks: int) -> str:
    """A play of ``tasks`` tasks whose modules change nothing, cycling through three kinds."""
    body = "".join(
        "    " + FLOOR_TASKS[n % len(FLOOR_TASKS)].format(n=n).replace("\n", "\n    ").rstrip(" ")
        for n in range(tasks)
    )
    return (
        "- name: The least a task run costs on this connection\n"
        "  hosts: all\n"
        "  gather_facts: false\n"
        "  tasks:\n" + body
    )


def _playbook(
    arguments: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess, float]:
    """ansible-playbook with ``arguments``, its output captured: the result and its wall time."""
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603
        [ANSIBLE_PLAYBOOK, *arguments],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return done, time.monotonic() - started


def per_run_floor(command: list[str], env: dict[str, str], tasks: int) -> float:
    """Seconds per task run of the floor play on the same hosts (wall ÷ tasks)."""
    with tempfile.TemporaryDirectory(prefix="irontrack-floor.") as tmp:
        playbook = Path(tmp) / "floor.yml"
        playbook.write_text(floor_playbook(tasks), encoding="utf-8")
        done, seconds = _playbook([*command, str(playbook)], env)
    if done.returncode != 0:
        raise RuntimeError(f"the floor play failed ({done.returncode}): {done.stdout[-2000:]}")
    return seconds / tasks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--inventory", default="inventories/local")
    parser.add_argument("--playbook", default="playbooks/site.yml")
    parser.add_argument("--top", type=int, default=25, help="slowest tasks to print")
    parser.add_argument(
        "-e",
        "--extra-vars",
        action="append",
        default=[],
        help="passed to ansible-playbook (repeatable), e.g. to time a variant of the play",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where the figures go (JSON; default results/reconverge/<UTC time>.json)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when the target is missed, too"
    )
    parser.add_argument(
        "--floor",
        type=int,
        default=0,
        metavar="N",
        help="then time N tasks of modules that change nothing on the same hosts: the least a"
        " task run costs there, times the play's runs (0: not measured)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="a dry run (--check --diff): on a converged host it must report 0 changed, too",
    )


def run(args: argparse.Namespace) -> int:
    command = ["ansible-playbook", "-i", args.inventory, args.playbook]
    for extra in args.extra_vars:
        command += ["-e", extra]
    if args.check:
        command += ["--check", "--diff"]
    env = {
        **os.environ,
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_CONFIG": os.environ.get("ANSIBLE_CONFIG", str(REPO / "ansible.cfg")),
    }
    before = children_cpu_seconds()
    done, seconds = _playbook(command[1:], env)
    cpu = children_cpu_seconds() - before
    sys.stderr.write(done.stderr)
    try:
        document = json.loads(done.stdout)
    except json.JSONDecodeError:
        print(done.stdout[-4000:], file=sys.stderr)
        print(f"re-converge: ansible-playbook exited {done.returncode}", file=sys.stderr)
        return 1
    result = parse(document, seconds)
    result.controller_cpu = cpu
    if args.floor > 0 and done.returncode == 0:
        inventory = ["-i", args.inventory, *(x for e in args.extra_vars for x in ("-e", e))]
        result.per_run_floor = per_run_floor(inventory, env, args.floor)
    print(report(result, " ".join(command), args.top))
    output = args.output or REPO / "results" / "reconverge" / time.strftime(
        "%Y-%m-%dT%H%M%SZ.json", time.gmtime()
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    print(f"figures: {output}")
    if done.returncode != 0:
        return done.returncode
    return 1 if args.strict and not result.met else 0
