"""Load: 50 simultaneous API users against a served app on loopback (bounded, self-stopping)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client, handle_file
from gradio_client.utils import QueueError

from lusd.web.editing import AppSettings
from tests.support.web import ARTIFACTS, served, shapes_picture

USERS = 50
MAX_QUEUE = 4


class Counting:
    """The real pipeline, counting calls and the most that ever ran at once."""

    def __init__(self, pipe):
        self.pipe, self.calls, self.running, self.peak = pipe, 0, 0, 0
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return self.pipe(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.timeout(400)
def test_fifty_concurrent_requests_are_answered_or_refused_cleanly(tiny_pipe, tmp_path):
    pipe = Counting(tiny_pipe)
    settings = AppSettings(max_queue=MAX_QUEUE, concurrency=1, base_overrides={"num_steps": 8})
    picture = handle_file(str(shapes_picture(tmp_path / "in.png", size=32)))
    with served(pipe, settings) as (url, _, _):
        clients = [Client(url, verbose=False) for _ in range(USERS)]
        start = threading.Barrier(USERS)

        def user(index: int) -> tuple[str, float]:
            start.wait(timeout=60)
            began = time.perf_counter()
            try:
                job = clients[index].submit(
                    picture, "a red circle", f"a red circle and a blue square {index}", "", 3,
                    index, False, api_name="/edit",
                )  # fmt: skip
                status = job.result(timeout=180)[2]
                outcome = "answered" if status.startswith("Done") else f"odd: {status}"
            except QueueError as error:
                outcome = "refused" if "try again" in str(error).lower() else f"odd: {error}"
            except Exception as error:  # anything else is a failure of the test
                outcome = f"failed: {type(error).__name__}: {error}"
            return outcome, time.perf_counter() - began

        with ThreadPoolExecutor(USERS) as pool:
            results = list(pool.map(user, range(USERS), timeout=300))
        outcomes = [outcome for outcome, _ in results]
        answered, refused = outcomes.count("answered"), outcomes.count("refused")
        # the app is still healthy afterwards
        after = Client(url, verbose=False).predict(
            picture, "", "a blue square", "", 1, 0, False, api_name="/edit"
        )
    summary = {
        "users": USERS,
        "max_queue": MAX_QUEUE,
        "answered": answered,
        "refused": refused,
        "pipeline_calls": pipe.calls,
        "peak_parallel_edits": pipe.peak,
        "slowest_answer_s": round(max(t for o, t in results if o == "answered"), 2),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "app-load.json").write_text(json.dumps(summary, indent=2))
    assert answered + refused == USERS, outcomes
    assert answered >= 1 and refused >= 1, summary
    assert pipe.peak == 1  # the concurrency limit held
    assert pipe.calls == answered + 1
    assert after[2].startswith("Done")
