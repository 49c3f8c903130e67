"""``python -m bench reconverge`` on a real ansible-playbook run (local connection, no host)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from bench.reconverge import floor_playbook

REPO = Path(__file__).resolve().parents[2]

PLAYBOOK = """\
- name: A play with one task that changes nothing and one that changes
  hosts: all
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Change nothing
      ansible.builtin.command: "true"
      changed_when: false
    - name: Take a moment, then report a change
      ansible.builtin.command: sleep 3
      changed_when: true
"""


def _run(
    tmp_path: Path, playbook: str, *extra: str, inventory: str = "localhost,"
) -> tuple[subprocess.CompletedProcess, dict]:
    (tmp_path / "play.yml").write_text(playbook, encoding="utf-8")
    output = tmp_path / "figures.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "reconverge",
            "-i",
            inventory,
            "--playbook",
            str(tmp_path / "play.yml"),
            "--output",
            str(output),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    return done, json.loads(output.read_text(encoding="utf-8"))


def test_counts_changes_and_times_each_task(tmp_path: Path) -> None:
    done, figures = _run(tmp_path, PLAYBOOK)
    assert done.returncode == 0, done.stderr
    assert figures["changed"] == 1
    assert figures["changed_tasks"] == ["Take a moment, then report a change (localhost)"]
    assert figures["target"] == {"max_seconds": 60.0, "changed": 0, "met": False}
    times = dict(figures["tasks"])
    assert times["Take a moment, then report a change"] >= 3.0
    assert figures["seconds"] >= 3.0
    assert figures["controller_cpu_s"] > 0
    # Two tasks ran on the one host.
    assert figures["runs"] == 2
    assert "tasks: 2 in the play, 2 task runs" in done.stdout
    assert "target re-converge ≤ 60 s with 0 changed: MISSED" in done.stdout
    # The slowest task comes first (3 s of sleep beyond the same per-task overhead).
    slowest = done.stdout.split("tasks:\n", 1)[1].splitlines()[0]
    assert slowest.endswith("Take a moment, then report a change")


def test_strict_fails_a_missed_target_and_passes_a_met_one(tmp_path: Path) -> None:
    done, _ = _run(tmp_path, PLAYBOOK, "--strict")
    assert done.returncode == 1
    unchanged = PLAYBOOK.replace("changed_when: true", "changed_when: false")
    done, figures = _run(tmp_path, unchanged, "--strict")
    assert done.returncode == 0, done.stderr
    assert figures["changed"] == 0
    assert figures["target"]["met"] is True
    assert "with 0 changed: met" in done.stdout


def test_a_failed_run_is_an_error(tmp_path: Path) -> None:
    failing = PLAYBOOK.replace('command: "true"', 'command: "false"')
    done, figures = _run(tmp_path, failing)
    assert done.returncode != 0
    assert figures["target"]["met"] is False
    assert figures["stats"]["localhost"]["failures"] == 1


def test_check_is_a_dry_run_with_the_extra_vars_passed_on(tmp_path: Path) -> None:
    # A file the play would write (its path comes from -e): --check reports the change
    # and writes nothing.
    target = tmp_path / "written"
    playbook = """\
- name: A play that would write a file
  hosts: all
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Write the file
      ansible.builtin.copy:
        content: "x\\n"
        dest: "{{ target }}"
        mode: "0644"
"""
    done, figures = _run(tmp_path, playbook, "--check", "-e", f"target={target}")
    assert done.returncode == 0, done.stderr
    assert f"-e target={target} --check --diff" in done.stdout
    assert figures["changed"] == 1
    assert figures["runs"] == 1
    assert not target.exists()


def test_floor_times_modules_that_do_nothing_on_the_same_hosts(tmp_path: Path) -> None:
    # The floor play takes the hosts' connection from the inventory (here: local).
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"floorhost ansible_connection=local ansible_python_interpreter={sys.executable}\n",
        encoding="utf-8",
    )
    unchanged = PLAYBOOK.replace("changed_when: true", "changed_when: false")
    done, figures = _run(tmp_path, unchanged, "--floor", "6", inventory=str(inventory))
    assert done.returncode == 0, done.stderr
    floor = figures["floor"]
    # Six module runs take real time, far less than the play's 3 s sleep each.
    assert 0 < floor["per_run_s"] < 3.0
    assert figures["busiest_host_runs"] == 2
    assert floor["play_s"] == round(2 * floor["per_run_s"], 1)
    assert "floor: a task run of a module that does nothing costs" in done.stdout
    assert "the busiest host's 2 task runs" in done.stdout


def test_floor_playbook_cycles_through_three_modules() -> None:
    play = yaml.safe_load(floor_playbook(5))[0]
    modules = [next(k for k in task if k.startswith("ansible.builtin.")) for task in play["tasks"]]
    assert modules == [
        "ansible.builtin.command",
        "ansible.builtin.stat",
        "ansible.builtin.file",
        "ansible.builtin.command",
        "ansible.builtin.stat",
    ]
    assert play["gather_facts"] is False
