"""The web console in a real browser (Debian's chromium through chromedriver and Selenium)
against a cluster of three `wire node` processes with a running pipeline: the cluster page
lists the members and the leader, the pipeline page draws the DAG with rising counts, its
Pause button pauses the pipeline (checked over the API), a bad line shows among the dead
letters with its reason, and a node killed with kill -9 shows as not alive within the
failover time; axe-core finds nothing critical. Screenshots of each page go to
target/console-screenshots/."""

from __future__ import annotations

import os
import pathlib
import shutil
import time
from typing import Any, Iterator, List

import pytest

import wire

from helpers import Proc, process_cluster, until

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
def nodes(tmp_path: pathlib.Path) -> Iterator[List[Proc]]:
    with process_cluster(tmp_path, extra=["--failover-after-ms", str(FAILOVER_MS)]) as out:
        yield out


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


def test_the_console_shows_the_cluster_and_drives_a_pipeline(browser: Any, nodes: List[Proc],
                                                             tmp_path: pathlib.Path) -> None:
    from selenium.webdriver.common.by import By

    one, two, three = nodes
    api = one.client
    SHOTS.mkdir(parents=True, exist_ok=True)
    flow = (
        wire.Pipeline("console", parallelism=2, checkpoint_interval="200ms")
        .source(wire.sources.generator(rate=400))
        .jq(".seq * 2")
        .sink(wire.sinks.file(tmp_path / "out"))
    )
    api.pipelines.deploy(flow)
    api.pipelines.wait("console", until="running", timeout=30)

    # Cluster: three members, one of them the leader, all alive.
    browser.get(f"{one.url}/ui#/")
    rows = until("three members", lambda: (r := browser.find_elements(By.CSS_SELECTOR, "table[aria-label=members] tbody tr")) and len(r) == 3 and r)
    roles = [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows]
    assert roles.count("leader") == 1, roles
    assert browser.find_element(By.ID, "leader").text == str(api.status()["leader"]["id"])
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
    # The chart's history is kept by the nodes: a page opened now on another node draws the
    # seconds before it was opened at its first drawing.
    until("three seconds of history", lambda: len(api.pipelines.status("console").get("throughput", [])) >= 4)
    browser.get(f"{two.url}/ui#/pipelines/console")
    drawn = until("the chart", lambda: browser.find_element(By.CSS_SELECTOR, "svg.chart"))
    assert int(drawn.get_attribute("data-points")) >= 3, drawn.get_attribute("data-points")
    browser.save_screenshot(str(SHOTS / "pipeline.png"))
    accessible(browser, "pipeline")
    # The spec as YAML is the same spec.
    from wire import _native

    shown = browser.find_element(By.ID, "spec-yaml").text
    assert _native.normalize_spec(shown) == _native.normalize_spec(flow.spec_json())

    # Pause from the page; the API agrees.
    browser.find_element(By.ID, "pause").click()
    status = api.pipelines.wait("console", until="paused", timeout=30)
    assert status["desired"] == "paused"
    until("the page to say paused", lambda: browser.find_element(By.ID, "state").text == "paused")
    browser.find_element(By.ID, "resume").click()
    api.pipelines.wait("console", until="running", timeout=30)

    # The list of pipelines.
    browser.get(f"{one.url}/ui#/pipelines")
    until("the list", lambda: "console" in browser.find_element(By.CSS_SELECTOR, "table[aria-label=pipelines]").text)
    browser.save_screenshot(str(SHOTS / "pipelines.png"))
    accessible(browser, "pipelines")

    # The key-value browser with a prefix search.
    api.kv.put("console/a", b"1")
    api.kv.put("other/b", b"2")
    browser.get(f"{one.url}/ui#/kv?prefix=console%2F")
    keys = until("the keys", lambda: browser.find_element(By.CSS_SELECTOR, "table[aria-label=keys]").text)
    assert "console/a" in keys and "other/b" not in keys
    browser.save_screenshot(str(SHOTS / "kv.png"))
    accessible(browser, "kv")

    # A record that is not JSON shows in the pipeline's dead letters, with the reason.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"n": 1}\n{this is not JSON\n{"n": 2}\n')
    api.pipelines.deploy(
        wire.Pipeline("bad-lines").source(wire.sources.file(bad)).sink(wire.sinks.file(tmp_path / "bad-out"))
        .dead_letter(wire.sinks.file(tmp_path / "bad-dead"))
    )
    api.pipelines.wait("bad-lines", timeout=30)
    reason = api.pipelines.status("bad-lines")["dead_letters"][0]["error"]
    browser.get(f"{one.url}/ui#/pipelines/bad-lines")
    dead = until("the dead letters", lambda: browser.find_element(By.CSS_SELECTOR, "table[aria-label='dead letters']").text)
    assert "{this is not JSON" in dead and reason.splitlines()[0][:40] in dead, (dead, reason)
    browser.save_screenshot(str(SHOTS / "dead-letters.png"))

    # A node killed (kill -9) shows as not alive within the failover time (the page asks a
    # live node).
    leader = api.status()["leader"]["id"]
    victim = next(n for n in (two, three) if n.id != leader)
    victim_id = victim.id
    browser.get(f"{one.url}/ui#/")
    victim.kill()
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


def test_the_console_asks_who_you_are_and_shows_what_you_may_do(browser: Any, tmp_path: pathlib.Path) -> None:
    """A node with users: the console asks for credentials (no browser dialog), refuses
    wrong ones, hides what the user may not do, and lets a user with the permission do
    it."""
    from selenium.webdriver.common.by import By

    import wire.auth

    token = wire.auth.new_token()
    users = [
        {"name": "viewer", "password_hash": wire.auth.hash_password("view-pw"), "permissions": ["status"]},
        {"name": "admin", "token_sha256": wire.auth.token_sha256(token), "permissions": ["all"]},
    ]
    node = wire.Node(data_dir=tmp_path / "n", bootstrap=True, http_addr="127.0.0.1:0", raft_addr="127.0.0.1:0",
                     users=users, cluster_secret="console-test-cluster-secret").wait_ready()
    try:
        node.pipelines.deploy(
            wire.Pipeline("guarded").source(wire.sources.generator(rate=50)).sink(wire.sinks.file(tmp_path / "out"))
        )
        node.pipelines.wait("guarded", until="running", timeout=30)
        SHOTS.mkdir(parents=True, exist_ok=True)

        def sign_in(user: str = "", password: str = "", bearer: str = "") -> None:
            until("the sign-in form", lambda: browser.find_element(By.ID, "signin"))
            browser.find_element(By.ID, "user").send_keys(user)
            browser.find_element(By.ID, "password").send_keys(password)
            browser.find_element(By.ID, "token").send_keys(bearer)
            browser.find_element(By.ID, "signin-button").click()

        browser.get(f"{node.url}/ui#/pipelines/guarded")
        until("the sign-in form", lambda: browser.find_element(By.ID, "signin"))
        browser.save_screenshot(str(SHOTS / "sign-in.png"))
        accessible(browser, "sign-in")

        sign_in("viewer", "wrong")
        until("the refusal", lambda: "wrong user name or password" in browser.find_element(By.ID, "main").text)

        browser.find_element(By.ID, "user").clear()
        browser.find_element(By.ID, "password").clear()
        sign_in("viewer", "view-pw")
        until("the pipeline page", lambda: browser.find_element(By.ID, "state").text == "running")
        assert "viewer" in browser.find_element(By.ID, "who").text
        assert not browser.find_elements(By.ID, "pause")
        assert "may not change pipelines" in browser.find_element(By.ID, "main").text
        browser.get(f"{node.url}/ui#/kv")
        until("the key-value page", lambda: "may not read keys" in browser.find_element(By.ID, "main").text)

        browser.find_element(By.ID, "signout").click()
        sign_in(bearer=token)
        browser.get(f"{node.url}/ui#/pipelines/guarded")
        until("the pause button", lambda: browser.find_element(By.ID, "pause")).click()
        node.pipelines.wait("guarded", until="paused", timeout=30)
        assert "admin" in browser.find_element(By.ID, "who").text
    finally:
        node.stop()
