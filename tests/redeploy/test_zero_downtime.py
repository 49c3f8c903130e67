"""A redeploy of a new service version keeps serving: no failed request during it.

A client on the host loops on GET /ping through the app's socket (a new connection per
request, as the proxy's group), and a second one through the proxy when it answers, while
playbooks/deploy.yml installs a new version of the service and switches slots, then while
it deploys the repository's version back. Both switches (blue -> green -> blue) must pass
without one failed request.

Needs a provisioned host (make up) and takes a few minutes:
    IRONTRACK_INVENTORY=inventories/local pytest tests/redeploy --hosts=docker://irontrack-local
Extra arguments for ansible-playbook: IRONTRACK_DEPLOY_ARGS (e.g. "-e app_wait_for_health=false").
"""

from __future__ import annotations

from redeploy_helpers import deploy, deployed, live_state, output, service_variant, stop_loops


def test_redeploy_drops_no_request(host, ping_loops, tmp_path):
    before = live_state(host)

    assert deployed(deploy(host, service_variant(tmp_path)))
    middle = live_state(host)
    assert deployed(deploy(host, None))
    after = live_state(host)

    summaries = stop_loops(host, ping_loops)
    print(f"slots {before['slot']} -> {middle['slot']} -> {after['slot']}; clients: {summaries}")

    assert middle["slot"] != before["slot"], "the first deploy did not switch slots"
    assert middle["release"] != before["release"], "the first deploy did not change release"
    assert after["slot"] != middle["slot"], "the second deploy did not switch slots"
    assert host.service(f"irontrack@{middle['slot']}").is_running is False
    assert summaries["socket"]["requests"] > 100, summaries
    for name, summary in summaries.items():
        assert summary["failures"] == 0, (name, summary)


def test_failed_deploy_keeps_the_old_release_serving(host, ping_loops, tmp_path):
    before = live_state(host)

    result = deploy(host, service_variant(tmp_path, broken=True))
    after = live_state(host)

    summaries = stop_loops(host, ping_loops)
    print(f"failed deploy; slot {before['slot']} kept; clients: {summaries}")

    assert result.returncode != 0, "a release that cannot start must fail the deploy"
    # ansible-core writes a failed task's message to stdout or stderr depending on the
    # callback settings (Molecule's environment sends it to stderr): look in both.
    said = output(result)
    assert "did not start in slot" in said, said[-3000:]
    assert after == before
    idle = "green" if before["slot"] == "blue" else "blue"
    assert not host.service(f"irontrack@{idle}").is_running
    assert not host.service(f"irontrack@{idle}").is_enabled
    assert host.service(f"irontrack@{before['slot']}").is_running
    assert host.file("/opt/irontrack/current").linked_to == before["release"]
    for name, summary in summaries.items():
        assert summary["failures"] == 0, (name, summary)
