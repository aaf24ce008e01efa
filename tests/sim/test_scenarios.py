"""The fault scenarios shipped in scenarios/: each ends with exactly the reference result,
no task lost, no result delivered twice, and shows the fault it is about."""

from __future__ import annotations

import pytest

from microswarm.sim import scenario
from microswarm.sim.cluster import Simulation

pytestmark = pytest.mark.slow


def simulate(repo, name):
    sim = Simulation(scenario.load(repo / "scenarios" / f"{name}.toml"))
    report = sim.run()
    r = report["result"]
    assert r["complete"] and r["verified"], r
    assert r["lost"] == 0 and r["duplicated"] == 0 and not r["failed"]
    return sim, report


def test_random_crashes_of_10_percent_of_100_nodes(repo):
    sim, report = simulate(repo, "crash-10pct")
    assert report["nodes"] == 100
    crashed = [d for d in report["detections"] if d["fault"] == "crash"]
    missed = [d for d in report["undetected"] if d["fault"] == "crash"]
    assert len(crashed) + len(missed) == 10 and crashed
    assert all(0 < d["detected_after_s"] <= 4 * 0.25 for d in crashed)
    # a crash not seen: the job was done (speculative copies of its tasks) before 4
    # heartbeat intervals had passed
    assert all(sim.events.now - d["at_s"] < 4 * 0.25 for d in missed)
    assert report["retried"] > 0
    aborted = [g for g in sim.gantt if g[4] == "aborted"]
    assert aborted, "crashes hit running tasks"


def test_one_percent_loss_and_corruption_on_every_serial_link(repo):
    sim, report = simulate(repo, "lossy-serial")
    links = report["links"]
    assert links["lost"] > 0 and links["corrupted"] > 0
    assert links["bad_frames_caught"] >= links["corrupted"] // 2
    assert report["recovered_lost_frames"] > 0
    assert all(n.link.serial and n.link.loss == 0.01 for n in sim.nodes)


def test_partition_heals_and_the_nodes_rejoin(repo):
    sim, report = simulate(repo, "partition-heal")
    cut = {f"eth-{i}" for i in range(20)}
    lost = {d["node"] for d in report["detections"] if d["fault"] == "partition"}
    assert lost == cut
    heal = 0.7 + 1.0
    worked_after = {sim.nodes[g[0]].node_id for g in sim.gantt if g[2] > heal and g[4] == "ok"}
    assert cut & worked_after, "healed nodes take tasks again"


def test_straggler_at_10x_gets_speculative_copies(repo):
    sim, report = simulate(repo, "straggler")
    assert report["speculative"] > 0
    straggler = sim.node_by_id["pico-3"]
    assert straggler.slowdown == 10
    held = {g[1] for g in sim.gantt if g[0] == straggler.index and g[4] != "ok"}
    won_elsewhere = {g[1] for g in sim.gantt if g[0] != straggler.index and g[4] == "ok"}
    assert held & won_elsewhere, "a copy elsewhere finished a task the straggler held"
    stretched = [g for g in sim.gantt if g[0] == straggler.index and g[2] < 0.3 < g[3]]
    assert stretched and stretched[0][3] - stretched[0][2] > 0.5, "running task slowed too"


def test_master_restart_mid_job_resumes_from_the_journal(repo):
    sim, report = simulate(repo, "master-restart")
    assert report["master_restarts"] == 1
    journal_before = sum(1 for g in sim.gantt if g[3] < 0.8 and g[4] == "ok")
    assert 0 < journal_before < report["tasks"]
    assert report["tasks"] < report["dispatches"] < 2 * report["tasks"]


def test_mixed_cluster_with_real_micropython_vm_boards(repo):
    """Real time: two VMs running the real firmware share the job with simulated boards."""
    sim, report = simulate(repo, "mixed-vm")
    assert report["real_time"] and report["vm_boards"] == 2
    vm_rows = {sim.nodes[g[0]].node_id for g in sim.gantt if sim.nodes[g[0]].real}
    assert vm_rows == {"vm-0", "vm-1"}
    assert all(not sim.nodes[g[0]].real or g[4] == "ok" for g in sim.gantt)
    # In real time the VMs set the pace (with the native module built they finish the job
    # in a fraction of a second): the crash may be detected, come before the job's end but
    # after its last result, or be due after the end; the report accounts for it either way.
    seen = report["detections"] + report["undetected"] + report["not_injected"]
    assert [(d["node"], d["fault"]) for d in seen] == [("sim-2", "crash")]
    crashed = [m for m in sim.marks if m[2] == "crash"]
    assert bool(crashed) == (not report["not_injected"])
    assert not report["not_injected"] or report["not_injected"][0]["at_s"] > report["virtual_s"]
    assert all(n.vboard is not None for n in sim.nodes if n.real)
    # the bound takes the VM boards' pace from their own results: a true lower bound
    q = report["schedule"]
    assert 0 < q["lower_bound_s"] <= q["makespan_s"]
