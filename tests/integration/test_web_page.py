"""The web page in a real headless Chromium against a real `tqa serve`: ask, citations, thumbs, durable feedback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ml.dataset.checks import traceability_problems
from ml.dataset.types import QAPair
from ml.feedback.store import FeedbackStore, new_query_id
from ml.index.staging import feedback_buffer, staged_pairs
from ml.net import wait_until_ready
from ml.settings import Settings
from ml.tracking.server import MlflowServer
from tests.integration.conftest import Indexed
from tests.support.browser import chromium
from tests.support.ports import free_port
from tests.support.prometheus_server import Prometheus
from tests.support.serve import Served, start_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = "How is RMS normalization implemented in Llama?"


def error_of(response: httpx.Response) -> str:
    body = response.json()
    # BentoML 1.4 wraps a 4xx error object in a list: https://github.com/bentoml/BentoML/issues/4232
    return (body[0] if isinstance(body, list) else body)["error"]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"), port=free_port()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def served(indexed: Indexed, mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The service with its query log on MLflow Tracing (a real tracking server)."""
    s = start_service(
        indexed.settings, tmp_path_factory.mktemp("web"), TQA_TRACING="true", TQA_MLFLOW_TRACKING_URI=mlflow_server.uri
    )
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: object, tmp_path: Path, name: str) -> None:
    """Save a screenshot next to the test's files, and into $SCREENSHOT_DIR when set (to look at the page)."""
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    if os.environ.get("SCREENSHOT_DIR"):
        shutil.copy(path, Path(os.environ["SCREENSHOT_DIR"]) / path.name)


def _ask(driver: object, url: str, question: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")  # type: ignore[attr-defined]
    box = driver.find_element(By.ID, "question")  # type: ignore[attr-defined]
    box.send_keys(question)
    box.send_keys(Keys.ENTER)
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return window.tqaTimings.shown > 0 || document.getElementById('status').className")
    )
    WebDriverWait(driver, 5).until(ec.visibility_of_element_located((By.ID, "result")))


def test_page_and_assets_are_served_locally_with_a_strict_policy(served: Served) -> None:
    page = httpx.get(served.url + "/")
    assert page.status_code == 200 and "<title>Transformers QA</title>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.split("<body>")[0].replace('name="viewport"', "")  # nothing from a CDN
    for asset in ("/ui/app.js", "/ui/style.css"):
        assert httpx.get(served.url + asset).status_code == 200
    # The API is still where it was: the page's mount does not shadow it.
    assert httpx.get(served.url + "/readyz").status_code == 200


@contextmanager
def dashboard(settings: Settings, mlflow_server: MlflowServer, log_dir: Path) -> Iterator[str]:
    """`tqa dashboard` (Streamlit) as a child process over the test's data dir; yields its URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQA_")}
    env.update(TQA_DATA_DIR=str(settings.data_dir), TQA_MLFLOW_TRACKING_URI=mlflow_server.uri)
    with (log_dir / "dashboard.log").open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "dashboard", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(f"{url}/_stcore/health", 120, proc, log_dir / "dashboard.log")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_ask_cite_thumbs_down_with_a_correction(
    served: Served, browser, indexed: Indexed, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    _ask(browser, served.url, QUESTION)
    assert not browser.find_element(By.ID, "abstained").is_displayed()
    sources = browser.find_elements(By.CSS_SELECTOR, "#sources li")
    assert sources, "the answer shows numbered sources"
    link = sources[0].find_element(By.CSS_SELECTOR, "a.src-link")
    assert link.get_attribute("href").startswith("https://github.com/")
    assert "#L" in link.get_attribute("href"), "a code citation opens the pinned lines"
    cites = browser.find_elements(By.CSS_SELECTOR, "#answer a.cite")
    assert cites, "the answer text links its [n] citations"
    cites[0].click()
    n = cites[0].text.strip("[]")
    details = browser.find_element(By.CSS_SELECTOR, f"#source-{n} details")
    assert details.get_attribute("open") is not None, "clicking [n] expands the cited code"
    assert "def " in details.find_element(By.TAG_NAME, "code").text or "class " in details.text
    timings = browser.execute_script("return window.tqaTimings")
    print(f"first answer visible {timings['shown'] - timings['submitted']:.0f} ms after submit")
    _shot(browser, tmp_path, "answer")

    query_id = browser.find_element(By.ID, "result").get_attribute("data-query-id")
    browser.find_element(By.TAG_NAME, "body").send_keys("-")  # keyboard: '-' is thumbs down
    comment = browser.find_element(By.ID, "comment")
    WebDriverWait(browser, 5).until(lambda d: comment.is_displayed())
    comment.send_keys("It should mention the variance.")
    browser.find_element(By.ID, "correction").send_keys("LlamaRMSNorm scales by the root mean square.")
    browser.find_element(By.ID, "correction").send_keys(Keys.CONTROL, Keys.ENTER)
    status = browser.find_element(By.ID, "feedback-status")
    WebDriverWait(browser, 10).until(lambda d: "Recorded" in status.text)
    assert "waiting for review" in status.text
    _shot(browser, tmp_path, "feedback")

    with FeedbackStore(indexed.settings.feedback_db) as store:
        row = store.feedback(query_id)
        [queued] = [q for q in store.review_queue() if q["query_id"] == query_id]
    assert row["rating"] == "down" and row["comment"] == "It should mention the variance."
    assert queued["question"] == QUESTION
    assert queued["correction"] == "LlamaRMSNorm scales by the root mean square."

    # A maintainer sees it in the dashboard's review queue and approves it there.
    with dashboard(indexed.settings, mlflow_server, tmp_path) as url:
        browser.get(url)
        WebDriverWait(browser, 60).until(
            lambda d: [t for t in d.find_elements(By.CSS_SELECTOR, "[role=tab]") if "Review queue" in t.text]
        )
        [tab] = [t for t in browser.find_elements(By.CSS_SELECTOR, "[role=tab]") if "Review queue" in t.text]
        tab.click()
        approve = WebDriverWait(browser, 30).until(
            lambda d: d.find_element(By.CSS_SELECTOR, f".st-key-approve-{query_id} button")
        )
        assert QUESTION in browser.find_element(By.TAG_NAME, "body").text, "the queue shows the question"
        _shot(browser, tmp_path, "review-queue")
        approve.click()
        with FeedbackStore(indexed.settings.feedback_db) as store:
            WebDriverWait(browser, 30).until(lambda d: store.feedback(query_id)["review"] == "approved")

    # `tqa feedback export` forwards the review to MLflow, reads the trace's assessments back and stages the pair,
    # which traces back to the chunk the answer cited in the index.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQA_")}
    env.update(TQA_DATA_DIR=str(indexed.settings.data_dir), TQA_MLFLOW_TRACKING_URI=mlflow_server.uri)
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli", "feedback", "export"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    pair = QAPair.model_validate(staged_pairs(feedback_buffer(indexed.settings.staging_file))[query_id])
    assert pair.answer == "LlamaRMSNorm scales by the root mean square." and pair.source.kind == "feedback"
    assert pair.id == f"feedback-{query_id}" and pair.question == QUESTION
    assert traceability_problems([pair], indexed.index.iter_chunks()) == []


def test_abstention_is_shown_as_such(served: Served, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    _ask(browser, served.url, "What is a good recipe for lasagna?")
    assert browser.find_element(By.ID, "abstained").is_displayed()
    assert browser.find_element(By.ID, "abstained").text == "Not found in the repository"
    assert not browser.find_elements(By.CSS_SELECTOR, "#sources li")
    _shot(browser, tmp_path, "abstained")


def test_injected_markup_is_shown_as_text_never_run(served: Served, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    attack = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script> RMSNorm [1]'
    _ask(browser, served.url, attack)
    assert browser.execute_script("return window.pwned === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, "#result img, #result script")
    # An error message from the server is text too.
    browser.execute_script("document.getElementById('question').value = ''")
    browser.find_element(By.ID, "ask-button").click()
    assert browser.find_element(By.ID, "status").text == "Type a question first."


def test_phone_width_keeps_the_page_readable(served: Served, tmp_path: Path) -> None:
    driver = chromium(width=390, height=844)
    try:
        _ask(driver, served.url, QUESTION)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        _shot(driver, tmp_path, "phone")
    finally:
        driver.quit()
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"


def test_feedback_api_rejects_bad_input_with_one_sentence(served: Served) -> None:
    unknown = httpx.post(f"{served.url}/feedback", json={"query_id": new_query_id(), "rating": "up"})
    assert unknown.status_code == 404 and "No answer has query_id" in error_of(unknown)
    bad = httpx.post(f"{served.url}/feedback", json={"query_id": "x", "rating": "up"})
    assert bad.status_code == 400 and error_of(bad) == "query_id must be the 32-character id returned by /ask."
    qid = httpx.post(f"{served.url}/ask", json={"question": QUESTION}).json()["query_id"]
    big = httpx.post(f"{served.url}/feedback", json={"query_id": qid, "rating": "down", "comment": "x" * 5000})
    assert big.status_code == 413
    ok = httpx.post(f"{served.url}/feedback", json={"query_id": qid, "rating": "up"})
    assert ok.status_code == 201 and ok.json()["rating"] == "up"


def test_each_answer_is_an_mlflow_trace_with_a_span_per_stage(served: Served, indexed: Indexed, mlflow_server) -> None:
    import time

    import mlflow

    body = httpx.post(f"{served.url}/ask", json={"question": QUESTION}).json()
    with FeedbackStore(indexed.settings.feedback_db) as store:
        trace_id = store.query(body["query_id"])["trace_id"]
    assert trace_id, "the query log links the answer to its trace"
    mlflow.set_tracking_uri(mlflow_server.uri)
    deadline = time.monotonic() + 60  # export is asynchronous: wait for it, do not time it
    trace = None
    while trace is None and time.monotonic() < deadline:
        try:
            trace = mlflow.get_trace(trace_id)
        except Exception:  # not exported yet
            trace = None
        time.sleep(0.5)
    assert trace is not None, f"trace {trace_id} never reached MLflow"
    assert trace.info.tags["tqa.query_id"] == body["query_id"]
    assert trace.info.tags["tqa.answerer"] == "extractive"
    names = [span.name for span in trace.data.spans]
    assert names[0] == "ask" and {"embedding", "search", "answer"} <= set(names)
    root = trace.data.spans[0]
    assert root.inputs == {"question": QUESTION}
    assert root.outputs["answer"] == body["answer"][:1000]


def test_answers_and_feedback_keep_working_when_mlflow_stops(served: Served, mlflow_server: MlflowServer) -> None:
    mlflow_server.stop()
    for _ in range(5):
        response = httpx.post(f"{served.url}/ask", json={"question": QUESTION}, timeout=30)
        assert response.status_code == 200
    rated = httpx.post(f"{served.url}/feedback", json={"query_id": response.json()["query_id"], "rating": "up"})
    assert rated.status_code == 201
    # The rating waits in the outbox for MLflow, and the metrics say so.
    import re
    import time

    def pending(metrics: str) -> float:
        return max((float(v) for v in re.findall(r"^tqa_feedback_outbox_pending\S* (\S+)$", metrics, re.M)), default=0)

    # Each worker's forwarder sets both gauges on its own cycle: wait until a cycle has seen the rating.
    deadline, metrics = time.monotonic() + 60, ""
    while time.monotonic() < deadline and not (
        re.search(r"^tqa_feedback_mlflow_down\S* 1\.0$", metrics, re.M) and pending(metrics) >= 1
    ):
        time.sleep(1)
        metrics = httpx.get(f"{served.url}/metrics").text
    assert re.search(r"^tqa_feedback_mlflow_down\S* 1\.0$", metrics, re.M), "the forwarder notices MLflow is down"
    assert pending(metrics) >= 1, "the rating waits in the outbox"


def test_every_dashboard_query_returns_data_from_a_real_prometheus(served: Served, tmp_path: Path) -> None:
    """Prometheus scrapes this service; the alert rules load and every Grafana panel's PromQL returns data."""
    import json
    import time

    root = Path(__file__).resolve().parents[2] / "ops" / "monitoring"
    prom = Prometheus(tmp_path, [served.url.removeprefix("http://")], [root / "rules" / "tqa-people.yml"]).start()
    try:
        exprs = [
            (panel["title"], target["expr"])
            # The canary, runner and Weaviate dashboards need more processes: test_monitoring_dashboards.py.
            for panel in json.loads((root / "dashboards" / "tqa-people.json").read_text())["panels"]
            for target in panel["targets"]
        ]
        assert exprs
        deadline = time.monotonic() + 120  # traffic between scrapes until every rate() has two samples
        empty = exprs
        while empty and time.monotonic() < deadline:
            qid = httpx.post(f"{served.url}/ask", json={"question": QUESTION}).json()["query_id"]
            httpx.post(f"{served.url}/feedback", json={"query_id": qid, "rating": "down"})
            time.sleep(1)
            empty = [(title, e) for title, e in exprs if not prom.query(e)]
        names = sorted(
            {r["metric"]["__name__"] for r in prom.query('{__name__=~"tqa_.*|bentoml_service_request_total"}')}
        )
        assert not empty, f"panels without data: {empty}; series scraped: {names}"
        loaded = {r["name"] for g in prom.rules() for r in g["rules"]}
        assert {"TqaAskP95AboveTarget", "TqaErrorRateAboveTarget", "TqaThumbsDownSpike"} <= loaded
    finally:
        prom.stop()


def test_acknowledged_feedback_survives_kill_9(served: Served, indexed: Indexed) -> None:
    """Concurrent ratings, then SIGKILL right after the last 201: every acknowledged rating is on disk."""
    ids = [httpx.post(f"{served.url}/ask", json={"question": QUESTION}).json()["query_id"] for _ in range(5)]

    def rate(i: int) -> str | None:
        qid = ids[i % len(ids)]
        body = {"query_id": qid, "rating": "down", "comment": f"post {i}", "correction": f"answer {i}"}
        r = httpx.post(f"{served.url}/feedback", json=body, timeout=30)
        return f"{qid}:{i}" if r.status_code == 201 else None

    with ThreadPoolExecutor(8) as pool:
        acked = [a for a in pool.map(rate, range(60)) if a]
    served.kill9()
    assert len(acked) == 60
    with FeedbackStore(indexed.settings.feedback_db) as store:
        comments = {store.feedback(qid)["comment"] for qid in ids}
    # The last write for each answer wins; each answer must hold one of the comments acknowledged for it.
    for qid in ids:
        mine = {f"post {a.split(':')[1]}" for a in acked if a.startswith(qid)}
        assert comments & mine
