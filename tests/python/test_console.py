"""The web console in a real browser (Debian's chromium through chromedriver and Selenium)
against a 3-node cluster with a running pipeline: the cluster page lists the members and the
leader, the pipeline page draws the DAG with rising counts, its Pause button pauses the
pipeline (checked over the API), and a stopped node shows as not alive within the failover
time. Screenshots of each page go to target/console-screenshots/."""

from __future__ import annotations

import os
import pathlib
import shutil
import time
from typing import Any, Callable, Iterator, List

import pytest

import wire
from helpers import start_node

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ROOT = pathlib.Path(__file__).resolve().parents[2]
SHOTS = ROOT / "target" / "console-screenshots"
# axe-core from npm (`make test-python` installs it under target/npm).
AXE = ROOT / "target" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
FAILOVER_MS = 1500


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.skip("chromium and chromedriver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def nodes(tmp_path: pathlib.Path) -> Iterator[List[wire.Node]]:
    opts = {"failover_after_ms": FAILOVER_MS}
    first = start_node(tmp_path / "n1", 1, bootstrap=True, **opts).wait_ready()
    out = [first]
    for i in (2, 3):
        out.append(start_node(tmp_path / f"n{i}", i, join=[first.http_addr], **opts).wait_ready())
    yield out
    for n in reversed(out):
        n.stop()


def until(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
        except Exception:  # the page is redrawing
            got = None
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def accessible(browser: Any, page: str) -> None:
    """Runs axe-core in the page: no critical finding."""
    assert AXE.exists(), f"{AXE} is missing: npm install --prefix target/npm axe-core@4"
    browser.execute_script(AXE.read_text())
    found = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then(r => done(r.violations.map(v => [v.id, v.impact, v.nodes.length])));"
    )
    critical = [v for v in found if v[1] == "critical"]
    assert not critical, f"{page}: {critical} (all: {found})"


def test_the_console_shows_the_cluster_and_drives_a_pipeline(browser: Any, nodes: List[wire.Node],
                                                             tmp_path: pathlib.Path) -> None:
    from selenium.webdriver.common.by import By

    one, two, three = nodes
    SHOTS.mkdir(parents=True, exist_ok=True)
    flow = (
        wire.Pipeline("console", parallelism=2, checkpoint_interval="200ms")
        .source(wire.sources.generator(rate=400))
        .jq(".seq * 2")
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    one.pipelines.deploy(flow)
    one.pipelines.wait("console", until="running", timeout=30)

    # Cluster: three members, one of them the leader, all alive.
    browser.get(f"{one.url}/ui#/")
    rows = until("three members", lambda: (r := browser.find_elements(By.CSS_SELECTOR, "table[aria-label=members] tbody tr")) and len(r) == 3 and r)
    roles = [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows]
    assert roles.count("leader") == 1, roles
    assert browser.find_element(By.ID, "leader").text == str(one.status()["leader"]["id"])
    browser.save_screenshot(str(SHOTS / "cluster.png"))
    accessible(browser, "cluster")

    # The pipeline: its DAG (source, jq, sink) with counts that rise.
    browser.get(f"{one.url}/ui#/pipelines/console")
    boxes = until("the DAG", lambda: (b := browser.find_elements(By.CSS_SELECTOR, "svg g.node")) and len(b) == 3 and b)
    assert [b.get_attribute("data-step") for b in boxes] == ["source0", "transform0", "sink0"]

    def jq_out() -> int:
        text = browser.find_element(By.CSS_SELECTOR, 'g.node[data-step="transform0"]').text
        return int(text.split("out ")[1].split()[0])

    first = until("counts", jq_out)
    until("the counts to rise", lambda: jq_out() > first)
    browser.save_screenshot(str(SHOTS / "pipeline.png"))
    accessible(browser, "pipeline")
    # The spec as YAML is the same spec.
    from wire import _native

    shown = browser.find_element(By.ID, "spec-yaml").text
    assert _native.normalize_spec(shown) == _native.normalize_spec(flow.spec_json())

    # Pause from the page; the API agrees.
    browser.find_element(By.ID, "pause").click()
    status = one.pipelines.wait("console", until="paused", timeout=30)
    assert status["desired"] == "paused"
    until("the page to say paused", lambda: browser.find_element(By.ID, "state").text == "paused")
    browser.find_element(By.ID, "resume").click()
    one.pipelines.wait("console", until="running", timeout=30)

    # The list of pipelines.
    browser.get(f"{one.url}/ui#/pipelines")
    until("the list", lambda: "console" in browser.find_element(By.CSS_SELECTOR, "table[aria-label=pipelines]").text)
    browser.save_screenshot(str(SHOTS / "pipelines.png"))
    accessible(browser, "pipelines")

    # The key-value browser with a prefix search.
    one.kv.put("console/a", b"1")
    one.kv.put("other/b", b"2")
    browser.get(f"{one.url}/ui#/kv?prefix=console%2F")
    keys = until("the keys", lambda: browser.find_element(By.CSS_SELECTOR, "table[aria-label=keys]").text)
    assert "console/a" in keys and "other/b" not in keys
    browser.save_screenshot(str(SHOTS / "kv.png"))
    accessible(browser, "kv")

    # A record that is not JSON shows in the pipeline's dead letters, with the reason.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"n": 1}\n{this is not JSON\n{"n": 2}\n')
    one.pipelines.deploy(
        wire.Pipeline("bad-lines").source(wire.sources.file(bad)).sink(wire.sinks.file(tmp_path / "bad-out"))
        .dead_letter(wire.sinks.file(tmp_path / "bad-dead"))
    )
    one.pipelines.wait("bad-lines", timeout=30)
    reason = one.pipelines.status("bad-lines")["dead_letters"][0]["error"]
    browser.get(f"{one.url}/ui#/pipelines/bad-lines")
    dead = until("the dead letters", lambda: browser.find_element(By.CSS_SELECTOR, "table[aria-label='dead letters']").text)
    assert "{this is not JSON" in dead and reason.splitlines()[0][:40] in dead, (dead, reason)
    browser.save_screenshot(str(SHOTS / "dead-letters.png"))

    # A node that stops shows as not alive within the failover time (the page asks node 1).
    leader = one.status()["leader"]["id"]
    victim = next(n for n in (two, three) if n.status()["node_id"] != leader)
    victim_id = victim.status()["node_id"]
    browser.get(f"{one.url}/ui#/")
    victim.stop()
    stopped = time.monotonic()

    def not_alive() -> bool:
        for r in browser.find_elements(By.CSS_SELECTOR, "table[aria-label=members] tbody tr"):
            cells = [c.text for c in r.find_elements(By.TAG_NAME, "td")]
            if cells and cells[0] == str(victim_id):
                return cells[2] == "not alive"
        return False

    until("the stopped node shown not alive", not_alive, timeout=FAILOVER_MS / 1000 + 10)
    assert time.monotonic() - stopped < FAILOVER_MS / 1000 + 10
    browser.save_screenshot(str(SHOTS / "cluster-node-down.png"))
