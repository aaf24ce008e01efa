"""A second process drives a running `microswarm master` through its client port:
Cluster.connect, `run --master`, `jobs`, `cancel`, two clients at once, a wrong key; and
the master's /metrics, parsed by prometheus_client's own parser."""

from __future__ import annotations

import array
import re
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from microswarm.firmware import kernels
from microswarm.master import Cluster, JobFailedError, Shared
from microswarm.master.client import RemoteError
from microswarm.master.client_proto import ClientProtocolError

pytestmark = pytest.mark.timeout(120)

CLI = [sys.executable, "-m", "microswarm.cli"]
KEY = "client-test-key-0123456789"


class RunningMaster:
    def __init__(self, process: subprocess.Popen, client: str, http: str) -> None:
        self.process = process
        self.client = client
        self.http = http

    def metrics(self) -> dict[str, dict[tuple, float]]:
        """name -> {sorted label items: value}, parsed by prometheus_client."""
        with urllib.request.urlopen(self.http + "metrics", timeout=10) as answer:
            assert answer.headers["Content-Type"].startswith("text/plain")
            text = answer.read().decode()
        out: dict[str, dict[tuple, float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (
                    sample.value)
        return out


@pytest.fixture
def master():
    """`microswarm master` with three in-process nodes, every port chosen by the system."""
    process = subprocess.Popen(
        [*CLI, "master", "--key", KEY, "--host", "127.0.0.1", "--port", "0", "--udp-port",
         "-1", "--control-port", "-1", "--client", "127.0.0.1:0", "--http", "127.0.0.1:0",
         "--inproc", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first, second = process.stdout.readline(), process.stdout.readline()
        client = re.search(r"client (\S+) ", first)
        http = re.search(r"dashboard: (\S+)", second)
        assert client and http, first + second + process.stderr.read()
        yield RunningMaster(process, client.group(1), http.group(1))
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_cluster_connect_submits_to_a_running_master(master):
    args = [(seed, 2000) for seed in range(12)]
    with Cluster.connect(master.client, key=KEY) as cluster:
        assert sorted(n.node_id for n in cluster.nodes()) == ["py1", "py2", "py3"]
        assert cluster.submit("echo", [1, "two", b"\x03"]).result(30) == [1, "two", b"\x03"]
        assert cluster.map("monte_carlo_pi", args) == [
            kernels.run("monte_carlo_pi", list(a)) for a in args]
        seen: list[tuple[int, int]] = []
        handle = cluster.submit_job("echo", [[i] for i in range(40)])
        assert cluster.wait(handle, lambda d, t: seen.append((d, t))) == list(range(40))
        assert seen[-1] == (40, 40) and handle.done == 40 and handle.state == "done"
        jobs = cluster.jobs()
        assert [j["state"] for j in jobs] == ["done"] * 3
        b, a = Shared(array.array("b", range(-8, 8))), array.array("b", range(16))
        rows = cluster.map("matmul", [[a[r * 4:(r + 1) * 4], b, 1, 4, 4] for r in range(4)])
        assert [x for p in rows for x in p] == list(kernels.matmul(a, b.value, 4, 4, 4))
        with pytest.raises(RemoteError, match="no node has kernel"):
            cluster.submit_job("no_such_kernel", [[1]])
        failed = cluster.submit_job("sha256", [["not bytes"]])
        with pytest.raises(JobFailedError):
            cluster.wait(failed, timeout=60)
        assert cluster.submit("echo", 7).result(30) == 7  # the connection is still good


def test_two_clients_submit_at_once(master):
    results: dict[int, list] = {}

    def client(n: int) -> None:
        with Cluster.connect(master.client, key=KEY) as cluster:
            results[n] = cluster.map("echo", [[[n, i]] for i in range(150)])

    threads = [threading.Thread(target=client, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {n: [[n, i] for i in range(150)] for n in (1, 2)}


def test_run_master_jobs_and_cancel_from_the_command_line(master):
    done = subprocess.run(
        [*CLI, "run", "matmul", "size=12", "block=5", "--master", master.client, "--key", KEY],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "sending to the master of cluster 'microswarm'" in done.stdout
    assert "matches the reference" in done.stdout

    with Cluster.connect(master.client, key=KEY) as cluster:
        slow = cluster.submit_job("sleep_ms", [[60_000]] * 60)  # cannot finish before cancel
        listed = subprocess.run([*CLI, "jobs", "--master", master.client, "--key", KEY,
                                 "--json"], capture_output=True, text=True, timeout=30)
        assert listed.returncode == 0, listed.stderr
        assert f'"job_id": {slow.job_id}' in listed.stdout
        cancel = subprocess.run([*CLI, "cancel", str(slow.job_id), "--master", master.client,
                                 "--key", KEY], capture_output=True, text=True, timeout=30)
        assert cancel.returncode == 0, cancel.stderr
        assert f"job {slow.job_id} cancelled" in cancel.stdout
        with pytest.raises(Exception) as raised:
            slow.future.result(30)
        assert type(raised.value).__name__ == "CancelledError"
        assert slow.state == "cancelled" and slow.done < 60
        again = subprocess.run([*CLI, "cancel", str(slow.job_id), "--master", master.client,
                                "--key", KEY], capture_output=True, text=True, timeout=30)
        assert "was already cancelled" in again.stdout
        missing = subprocess.run([*CLI, "cancel", "999", "--master", master.client, "--key",
                                  KEY], capture_output=True, text=True, timeout=30)
        assert missing.returncode != 0 and "no job 999" in missing.stderr


def test_a_wrong_key_is_refused_and_the_master_goes_on(master):
    with pytest.raises(ClientProtocolError, match="wrong cluster key"):
        Cluster.connect(master.client, key="not-the-cluster-key-at-all")
    bad = subprocess.run([*CLI, "jobs", "--master", master.client, "--key", "x" * 20],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "wrong cluster key" in bad.stderr
    import socket

    from microswarm.master.client_proto import parse_address

    with socket.create_connection(parse_address(master.client), timeout=10) as raw:
        assert raw.recv(4096)  # the master's challenge
        raw.sendall(b"\xff\xff\xff\xff" + b"x" * 64)  # a 4 GB message before any proof
        assert raw.recv(4096) == b""  # dropped at once, nothing allocated for it
    with Cluster.connect(master.client, key=KEY) as cluster:
        assert cluster.submit("echo", 1).result(30) == 1
    assert master.metrics()["microswarm_client_refusals_total"][()] == 2


def test_metrics_parse_and_move_after_a_job(master):
    before = master.metrics()
    assert before["microswarm_nodes"] == {(("link", "mem"), ("state", "idle")): 3.0}
    assert (("kernel", "echo"),) not in before.get("microswarm_tasks_completed_total", {})
    with Cluster.connect(master.client, key=KEY) as cluster:
        cluster.map("echo", [[i] for i in range(25)])
    after = master.metrics()
    assert after["microswarm_tasks_completed_total"][(("kernel", "echo"),)] == 25
    assert after["microswarm_task_duration_seconds_count"][(("kernel", "echo"),)] == 25
    assert after["microswarm_jobs_finished_total"][(("state", "done"),)] == 1
    sent = after["microswarm_link_sent_bytes_total"][(("link", "mem"),)]
    assert sent > before["microswarm_link_sent_bytes_total"][(("link", "mem"),)]
    assert after["microswarm_tasks"] == {(("state", "pending"),): 0, (("state", "running"),): 0}
    names = {name for name in after if name.startswith("microswarm_")}
    assert names == {name for name in after}, "every metric carries the microswarm_ prefix"


def test_run_without_a_master_says_so():
    answer = subprocess.run([*CLI, "run", "echo", "--master", "127.0.0.1:1", "--key", KEY],
                            capture_output=True, text=True, timeout=30)
    assert answer.returncode != 0 and "no master answers on 127.0.0.1:1" in answer.stderr
    nokey = subprocess.run([*CLI, "jobs", "--master", "127.0.0.1:1"], capture_output=True,
                           text=True, timeout=30)
    assert nokey.returncode != 0 and "the cluster key is needed" in nokey.stderr


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.slow
def test_up_then_run_with_the_same_cluster_file(tmp_path, repo):
    """examples/demo.toml as its comment says: `up FILE`, then `run JOB --cluster FILE` in
    another process sends the job to that master (here on free ports, not the file's)."""
    text = (repo / "examples" / "demo.toml").read_text()
    ports = dict(zip(("5880", "5881", "5882", "5883", "5884"), map(str, _free_ports(5)),
                     strict=True))
    assert all(re.search(rf"\b{old}\b", text) for old in ports)
    # one pass: a free port such as 45881 must not be rewritten again as the file's 5881
    text = re.sub(r"\b588[0-4]\b", lambda m: ports[m.group()], text)
    path = tmp_path / "demo.toml"
    path.write_text(text)
    up = subprocess.Popen([*CLI, "up", str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        table = ""
        while "└" not in table:  # the node table's last line: every node joined
            line = up.stdout.readline()
            assert line, table + up.stderr.read()
            table += line
        run = subprocess.run([*CLI, "run", "mandelbrot", "--cluster", str(path)],
                             capture_output=True, text=True, timeout=90)
        assert run.returncode == 0, run.stderr
        assert "sending to the master of cluster 'demo'" in run.stdout
        assert "matches the reference" in run.stdout
        jobs = subprocess.run([*CLI, "jobs", "--cluster", str(path), "--json"],
                              capture_output=True, text=True, timeout=30)
        assert '"state": "done"' in jobs.stdout, jobs.stderr
        again = subprocess.run([*CLI, "up", str(path)], capture_output=True, text=True,
                               timeout=60)
        assert again.returncode != 0 and "Traceback" not in again.stderr
        assert "Is a master already running with these ports?" in again.stderr
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
