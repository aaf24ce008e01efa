"""What a simulation run reports, as a JSON-ready dict, and its text rendering."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from microswarm.sim.cluster import Simulation


def build_report(sim: Simulation) -> dict[str, Any]:
    m = sim.master
    job = sim.job
    total = len(job.tasks)
    complete = len(m.results) == total
    verified = False
    mismatch = ""
    if complete:
        answer = job.assemble([m.results[i] for i in range(total)])
        expected = job.reference()
        verified = answer == expected
        if not verified:
            mismatch = "assembled result differs from the reference"
    makespan = sim.events.now
    util = {n.node_id: (n.busy_s / makespan if makespan else 0.0) for n in sim.nodes}
    values = sorted(util.values())
    links = _link_totals(sim)
    duplicates = m.duplicates + m.scheduler.duplicates
    journal = m.journal.stored()
    journal_ok = None
    if journal is not None:
        journal_ok = sorted(journal) == list(range(total)) and all(
            journal[i] == m.results.get(i) for i in range(total))
    return {
        "scenario": sim.scenario.name,
        "seed": sim.seed,
        "nodes": len(sim.nodes),
        "vm_boards": len(sim.nodes) - len(sim.simulated),
        "real_time": bool(sim.scenario.vms),
        "job": job.describe,
        "tasks": total,
        "result": {
            "complete": complete,
            "verified": verified,
            "mismatch": mismatch,
            "failed": m.failed_cause,
            "lost": total - len(m.results),
            "duplicated": sum(max(0, c - 1) for c in m.deliveries.values()),
            "journal_complete": journal_ok,
        },
        "virtual_s": round(makespan, 6),
        "wall_s": round(sim.wall_s, 3),
        "speedup": round(makespan / sim.wall_s, 1) if sim.wall_s else None,
        "events": sim.events.processed,
        "dispatches": m.dispatches + m.scheduler.dispatches,
        "retried": m.retries,
        "recovered_lost_frames": m.recovered,
        "speculative": m.speculative,
        "duplicates_suppressed": duplicates,
        "recomputed_after_restart": m.recomputed,
        "master_restarts": m.restarts,
        "detections": sim.detections,
        "undetected": [
            {"node": node, "fault": kind, "at_s": round(at, 6)}
            for node, (kind, at) in sorted(sim.fault_at.items())
        ],
        # scheduled for after the job ended (a fast run): never injected, so never detected
        "not_injected": [
            {"node": node, "fault": kind, "at_s": round(at, 6)}
            for node, kind, at in sorted(sim.fault_plan.values(), key=lambda f: (f[2], f[0]))
        ],
        "schedule": schedule_quality(sim, complete),
        "utilisation": {
            "min": round(values[0], 4),
            "mean": round(sum(values) / len(values), 4),
            "max": round(values[-1], 4),
            "per_node": {k: round(v, 4) for k, v in util.items()},
        },
        "links": links,
        "counters": dict(sorted(sim.counters.items())),
        "trace_events": sim.trace_events,
        "trace_sha256": sim.trace_hash(),
    }


def schedule_quality(sim: Simulation, complete: bool) -> dict[str, Any]:
    """The makespan (job submitted to last result in), the lower bound no placement can
    beat (sim/bounds.py) and their ratio."""
    from microswarm.sim.bounds import lower_bound

    start = sim.job_start
    bound = lower_bound(sim, start, sim.vm_pace())
    makespan = sim.events.now - start if complete else None
    lb = bound.pop("lower_bound_s")
    return {
        "policy": sim.policy,
        "makespan_s": None if makespan is None else round(makespan, 6),
        "lower_bound_s": round(lb, 6),
        "ratio": None if makespan is None or lb <= 0 else round(makespan / lb, 4),
        "bound": bound,
    }


def _link_totals(sim: Simulation) -> dict[str, int]:
    out = {"frames": 0, "bytes": 0, "lost": 0, "corrupted": 0, "bad_frames_caught": 0}
    for node in sim.simulated:
        for d in (node.link.tx, node.link.rx):
            out["frames"] += d.frames
            out["bytes"] += d.bytes
            out["lost"] += d.lost
            out["corrupted"] += d.corrupted
    out["bad_frames_caught"] = sim.counters["master_bad_frames"] + sim.counters["node_bad_frames"]
    return out


def _schedule_line(q: dict[str, Any]) -> str:
    if q["makespan_s"] is None:
        return (f"  schedule ({q['policy']}): unfinished; lower bound "
                f"{q['lower_bound_s']:.3f} s ({q['bound']['binding']})")
    return (f"  schedule ({q['policy']}): makespan {q['makespan_s']:.3f} s, lower bound "
            f"{q['lower_bound_s']:.3f} s ({q['bound']['binding']}), ratio {q['ratio']:.3f}")


def render(report: dict[str, Any]) -> str:
    r = report["result"]
    status = "OK" if r["verified"] else ("FAILED: " + (r["failed"] or r["mismatch"] or
                                                        f"{r['lost']} tasks lost"))
    u = report["utilisation"]
    links = report["links"]
    lines = [
        f"scenario {report['scenario']} (seed {report['seed']}): {report['nodes']} nodes, "
        f"{report['job']}",
        f"  result: {status} - {report['tasks']} tasks, lost {r['lost']}, "
        f"duplicated {r['duplicated']}",
        f"  time: {report['virtual_s']:.3f} s virtual in {report['wall_s']:.3f} s wall "
        f"({report['speedup']}x), {report['events']} events",
        f"  tasks: {report['dispatches']} dispatches, {report['retried']} retried, "
        f"{report['speculative']} speculative copies, {report['duplicates_suppressed']} "
        f"duplicate results suppressed, {report['recovered_lost_frames']} recovered from "
        "lost frames",
        f"  links: {links['frames']} frames, {links['bytes']} bytes, {links['lost']} lost, "
        f"{links['corrupted']} corrupted, {links['bad_frames_caught']} bad frames caught",
        _schedule_line(report["schedule"]),
        f"  utilisation: min {u['min']:.1%}  mean {u['mean']:.1%}  max {u['max']:.1%}",
    ]
    if report["master_restarts"]:
        lines.append(f"  master restarts: {report['master_restarts']}, "
                     f"{report['recomputed_after_restart']} tasks computed again (their "
                     f"journal batch was lost), journal complete: {r['journal_complete']}")
    det = report["detections"]
    if det:
        times = sorted(d["detected_after_s"] for d in det)
        lines.append(f"  failures detected: {len(det)}, after {times[0]:.2f} s (min) "
                     f"{times[len(times) // 2]:.2f} s (median) {times[-1]:.2f} s (max)")
        for d in det[:10]:
            lines.append(f"    {d['node']}: {d['fault']} at {d['at_s']:.2f} s, detected "
                         f"after {d['detected_after_s']:.2f} s")
        if len(det) > 10:
            lines.append(f"    ... {len(det) - 10} more (see --json)")
    if report["undetected"]:
        lines.append(f"  faults not (yet) detected when the run ended: {len(report['undetected'])}"
                     " (the job finished first, or the node had not joined)")
    if report["not_injected"]:
        lines.append(f"  faults not injected: {len(report['not_injected'])} (due after the job "
                     f"had ended at {report['virtual_s']:.2f} s)")
    per_node = u.get("per_node", {})
    if 0 < len(per_node) <= 20:
        cells = [f"{k} {v:.0%}" for k, v in per_node.items()]
        lines.append("  per node:")
        lines += ["    " + "  ".join(cells[i : i + 8]) for i in range(0, len(cells), 8)]
    lines.append(f"  trace: {report['trace_events']} events, sha256 {report['trace_sha256']}")
    return "\n".join(lines)
