"""The views of a running master: board logs (`microswarm logs`), `microswarm top`, the
dashboard's JSON and its page in a real headless chromium (skipped, saying why, where
chromium cannot be installed)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from microswarm.master import Cluster
from microswarm.master.config import ClusterSpec
from microswarm.master.messages import build
from microswarm.protocol.catalog import MsgType

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import browser  # noqa: E402
import vendor_js  # noqa: E402

pytestmark = pytest.mark.timeout(300)

CLI = [sys.executable, "-m", "microswarm.cli"]
KEY = "views-test-key-0123456789"


def until(condition, timeout: float = 30, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout} s"
        time.sleep(0.05)
    return value


@pytest.fixture
def cluster():
    spec = ClusterSpec(name="views", key=KEY.encode(), tcp_port=0, udp_port=None,
                       control_port=None, client="127.0.0.1:0", http="127.0.0.1:0", inproc=0)
    with Cluster(spec) as cluster:
        cluster.inproc = cluster._call(cluster.master.add_inproc_nodes(3))
        cluster.wait_for_nodes(3)
        yield cluster


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read()


def test_log_frames_are_kept_per_node_and_shown_by_logs(cluster):
    node = cluster.inproc[1]
    cluster._call(_value(lambda: node.send(
        MsgType.LOG, build(MsgType.LOG, level=3, text="sensor bus stuck"))))
    cluster._call(_value(lambda: node.send(
        MsgType.LOG, build(MsgType.LOG, level=1, text="calibrated"))))
    recorder = cluster.services.recorder
    until(lambda: len(recorder.logs.get("py2", ())) == 2, what="two LOG lines from py2")
    address = cluster.services.client_address
    shown = subprocess.run([*CLI, "logs", "py2", "--master", address, "--key", KEY],
                           capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 2
    assert "error" in lines[0] and "sensor bus stuck" in lines[0]
    assert "info" in lines[1] and "calibrated" in lines[1]
    none = subprocess.run([*CLI, "logs", "py1", "--master", address, "--key", KEY],
                          capture_output=True, text=True, timeout=30)
    assert "no log lines kept for py1" in none.stdout
    state = json.loads(get(cluster.services.http_url + "api/state"))
    assert state["logs"]["py2"][0][1:] == ["error", "sensor bus stuck"]
    assert any("py2 error: sensor bus stuck" in e[2] for e in state["events"])


@pytest.mark.slow
@pytest.mark.parametrize("link", ["tcp", "serial"])
def test_a_virtual_boards_console_errors_and_own_log_lines_land_in_its_log(link):
    """A board whose session the master ends says why, itself, once it joined again (a
    LOG frame, firmware/engine_log.py): on a serial board, whose console is the link, that
    is the only word from it; a TCP board's console error is kept too."""
    from microswarm.master.config import VirtualGroup

    node = "vm" + link[0] + "1"
    spec = ClusterSpec(name="console", key=KEY.encode(), tcp_port=0, udp_port=None,
                       control_port=None, client="127.0.0.1:0", http=None,
                       virtual=[VirtualGroup(1, "unix", link, "vm" + link[0], False)])
    with Cluster(spec) as cluster:
        cluster._call(_value(lambda: cluster.master.sessions[node].close("maintenance")))
        recorder = cluster.services.recorder
        until(lambda: any(text.startswith("previous session ended")
                          for _, _, text in recorder.logs.get(node, ())), 30,
              "the board's own LOG line in its log")
        if link == "tcp":
            until(lambda: any(text.startswith("console:")
                              for _, _, text in recorder.logs.get(node, ())), 30,
                  "the board's console error in its log")
        shown = subprocess.run([*CLI, "logs", node, "--master",
                                cluster.services.client_address, "--key", KEY],
                               capture_output=True, text=True, timeout=30)
        rejoined = cluster.master.sessions[node].info
    lines = shown.stdout.splitlines()
    assert rejoined is not None and rejoined.log_lines >= 1
    assert any(" warning " in line and line.endswith(
        "previous session ended: master said bye: maintenance") for line in lines), lines
    if link == "tcp":
        assert any(" error " in line and "console: microswarm: link down: master said bye: "
                   "maintenance" in line for line in lines), lines
    else:
        assert not any("console:" in line for line in lines), lines


def test_top_shows_nodes_and_a_job(cluster):
    handle = cluster.submit_job("echo", [[i] for i in range(30)])
    cluster.wait(handle)
    frame = subprocess.run(
        [*CLI, "top", "--once", "--master", cluster.services.client_address, "--key", KEY],
        capture_output=True, text=True, timeout=30, env={"COLUMNS": "140", "PATH": ""})
    assert frame.returncode == 0, frame.stderr
    for text in ("microswarm 'views'", "3 nodes", "py1", "py3", "30/30", "echo", "done",
                 "py1 joined over mem"):
        assert text in frame.stdout, text


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_top_refreshes_on_a_terminal_until_ctrl_c(cluster, sigint):
    import os
    import pty
    import select
    import signal

    argv = [*CLI, "top", "--interval", "0.2", "--master", cluster.services.client_address,
            "--key", KEY]
    if sigint == "ignored":  # as a background job of a shell without job control, or a
        # CI runner, starts it: an ignored SIGINT outlives exec, and Python keeps it
        argv = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, "
                "signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])", *argv]
    here, there = pty.openpty()
    top = subprocess.Popen(argv, stdin=there, stdout=there, stderr=there,
                           env={"COLUMNS": "140", "LINES": "60", "TERM": "xterm-256color"})
    os.close(there)
    screen = b""

    def shows(text: bytes) -> bool:
        nonlocal screen
        while select.select([here], [], [], 0.1)[0]:
            try:
                screen += os.read(here, 65536)
            except OSError:
                break
        return text in screen

    try:
        until(lambda: shows(b"py3"), 30, "top's first frame")
        cluster.map("echo", [[i] for i in range(7)])  # appears in a later frame
        until(lambda: shows(b"7/7"), 30, "the new job in a refreshed frame")
        top.send_signal(signal.SIGINT)
        # the terminal is read until top has left, as a user's is: one nobody reads holds
        # about 19 KB (Linux), three of these 6 KB frames, and top drawing its last one on a
        # full one waits for ever (seen when this process ran late between its last read
        # and the Ctrl-C)
        until(lambda: shows(b"") and top.poll() is not None, 20, "top leaving on Ctrl-C")
        assert top.returncode == 0
    finally:
        if top.poll() is None:
            top.kill()
            top.wait(10)
        os.close(here)


def test_dashboard_state_page_and_vendored_chart_library(cluster):
    url = cluster.services.http_url
    page = get(url).decode()
    assert "/static/dashboard.js" in page and f"chart-{vendor_js.VERSION}.umd.min.js" in page
    served = get(url + f"static/chart-{vendor_js.VERSION}.umd.min.js")
    assert served == vendor_js.TARGET.read_bytes()
    assert vendor_js.digest(vendor_js.TARGET) == vendor_js.SHA256
    cluster.map("echo", [[i] for i in range(12)])
    state = json.loads(get(url + "api/state"))
    assert [n["node_id"] for n in state["nodes"]] == ["py1", "py2", "py3"]
    assert state["tasks"]["completed"] == 12 and state["jobs"][0]["done"] == 12
    assert len(state["timeline"]) == 12
    assert sum(n for _t, n in state["throughput"]) == 12
    with urllib.request.urlopen(url + "api/stream", timeout=10) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        first = stream.readline()
        assert first.startswith(b"data: {") and json.loads(first[6:])["cluster"] == "views"


def test_refusals_losses_and_retries_show_as_events_and_metrics(cluster):
    from prometheus_client.parser import text_string_to_metric_families

    from microswarm.master.inproc import InprocNode

    async def intruder():
        node = InprocNode("intruder", b"wrong-key-0123456789")
        await node.connect_tcp("127.0.0.1", cluster.master.tcp_port)
        return node

    stranger = cluster._call(intruder())
    recorder = cluster.services.recorder
    until(lambda: recorder.refusals == 1, what="the refusal")
    handle = cluster.submit_job("sleep_ms", [[50]] * 60)
    until(lambda: handle.done >= 6, what="a few results")

    async def stop_a_busy_node():
        assert cluster.master.scheduler.node_stats()["py1"]["inflight"] > 0
        await cluster.inproc[0].stop()  # py1 goes away with tasks in flight

    cluster._call(stop_a_busy_node())
    assert cluster.wait(handle, timeout=60) == [50] * 60  # sleep_ms answers its argument
    cluster._call(stranger.stop())
    texts = [text for _t, _kind, text in recorder.events]
    assert any("wrong cluster key" in t and t.startswith("tcp ") for t in texts), texts
    assert any(t.startswith("py1 left: ") for t in texts), texts
    assert any(" attempt 2 on py" in t for t in texts), texts
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(get(
                   cluster.services.http_url + "metrics").decode())
               for s in family.samples}
    assert samples[("microswarm_join_refusals_total", ())] == 1
    assert samples[("microswarm_nodes_left_total", (("link", "mem"),))] == 1
    assert samples[("microswarm_task_retries_total", (("kernel", "sleep_ms"),))] >= 1
    assert samples[("microswarm_tasks_completed_total", (("kernel", "sleep_ms"),))] == 60
    assert samples[("microswarm_nodes", (("link", "mem"), ("state", "idle")))] == 2


@pytest.mark.slow
def test_dashboard_in_a_real_browser_shows_nodes_and_a_running_job(cluster, tmp_path):
    try:
        browser.ensure_chromium()
    except browser.BrowserMissing as exc:
        pytest.skip(f"no headless browser here, the dashboard's page is not checked: {exc}")
    from selenium.webdriver.common.by import By

    def text_of(selector: str) -> str:
        return driver.find_element(By.CSS_SELECTOR, selector).text

    with browser.chromium() as driver:
        driver.get(cluster.services.http_url)
        until(lambda: all(n in text_of("#nodes tbody") for n in ("py1", "py2", "py3")), 60,
              "the page listing the three joined nodes")
        handle = cluster.submit_job("sleep_ms", [[250]] * 400)  # ~33 s on three nodes

        def running_with_progress():
            rows = driver.execute_script(JOB_ROWS)
            return rows and "running" in rows[0][0] and 0 < rows[0][1] < 400 and rows[0]

        text, first, total = until(running_with_progress, 30, "the running job's progress")
        assert total == 400 and "sleep_ms" in text
        until(lambda: driver.execute_script(JOB_ROWS)[0][1] > first, 30, "progress moving")
        assert driver.find_element(By.ID, "live").text == "live"
        bars = driver.execute_script(
            "return Chart.getChart('timeline').data.datasets.map(d => [d.label, d.data.length])")
        assert {label for label, count in bars if count} == {"py1", "py2", "py3"}
        driver.save_screenshot(str(tmp_path / "dashboard.png"))
    assert not handle.future.done()  # it was running all along; closing the cluster ends it
    assert (tmp_path / "dashboard.png").stat().st_size > 20_000


JOB_ROWS = """return [...document.querySelectorAll('#jobs tbody tr')].map(tr => {
    const p = tr.querySelector('progress');
    return [tr.textContent, p ? p.value : -1, p ? p.max : -1];
})"""


async def _value(fn):
    return fn()
