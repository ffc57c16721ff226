"""The web app under load: 50 simultaneous gradio_client users against a real `lusd serve`.

Starts `lusd serve` as a subprocess with the shipped shapes model and its default queue
(--max-queue 8, --concurrency 1), fires 50 edit requests at the same moment (twice, to
see that memory does not grow), and records for each: answered, refused with the busy
message, or failed; how long it waited in the queue and until its answer; and the
server's resident memory (VmRSS sampled, VmHWM peak). Then one more edit checks that
the app still serves, and an upload over --max-file-size checks that it is refused
before anything decodes it. Writes bench/results/web_load.json.

    python bench/web_load.py [--users 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from gradio_client import Client, handle_file
from gradio_client.utils import QueueError, Status
from machine import machine_line, process_memory_mb  # bench/ is on sys.path when run as a script

from lusd.shapes import EXAMPLES_DIR
from lusd.web.editing import list_examples

OUT = Path(__file__).resolve().parent / "results" / "web_load.json"
MAX_QUEUE, CONCURRENCY, MAX_FILE_SIZE = 8, 1, "10mb"
STARTED = {Status.PROCESSING, Status.PROGRESS, Status.ITERATING, Status.FINISHED}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50": round(statistics.median(ordered), 2),
        "p95": round(p95, 2),
        "max": round(ordered[-1], 2),
    }


def _start_server(port: int, tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp)}
    command = [sys.executable, "-c", "from lusd.cli import main; main()", "serve"]
    command += ["--port", str(port), "--max-queue", str(MAX_QUEUE)]
    command += ["--concurrency", str(CONCURRENCY), "--max-file-size", MAX_FILE_SIZE]
    log = (tmp / "serve.log").open("w")
    return subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_ready(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"lusd serve exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/config", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("lusd serve did not come up")


def _one_user(client: Client, picture, source: str, target: str, seed: int, barrier) -> dict:
    barrier.wait(timeout=120)
    began = time.perf_counter()
    started = None
    try:
        job = client.submit(picture, source, target, "", 3, seed, False, api_name="/edit")
        while not job.done():
            if started is None and job.status().code in STARTED:
                started = time.perf_counter()
            time.sleep(0.05)
        status = job.result(timeout=600)[2]
        outcome = "answered" if status.startswith("Done") else "error"
        detail = status
    except QueueError as error:
        outcome = "refused" if "try again" in str(error).lower() else "error"
        detail = str(error)
    except Exception as error:  # counted, not raised: the figures are the point
        outcome, detail = "error", f"{type(error).__name__}: {error}"
    ended = time.perf_counter()
    return {
        "outcome": outcome,
        "detail": detail[:200],
        "wait_s": ended - began,
        "queue_wait_s": (started - began) if started is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="simultaneous users per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (memory must not grow)")
    args = parser.parse_args()
    users, rounds = args.users, args.rounds
    image, source, target = list_examples(EXAMPLES_DIR)[1]
    with tempfile.TemporaryDirectory(prefix="web-load-") as tmp_name:
        tmp = Path(tmp_name)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        process = _start_server(port, tmp)
        samples: list[float] = []
        try:
            _wait_ready(url, process)
            idle_mb = process_memory_mb(process.pid, "VmRSS")
            picture = handle_file(image)
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.wait(0.25):
                    samples.append(process_memory_mb(process.pid, "VmRSS"))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            results, round_s, rss_after_round = [], [], []
            for _ in range(rounds):
                clients = [Client(url, verbose=False) for _ in range(users)]
                barrier = threading.Barrier(users)
                began = time.perf_counter()
                with ThreadPoolExecutor(users) as pool:
                    futures = [
                        pool.submit(_one_user, clients[i], picture, source, target, i, barrier)
                        for i in range(users)
                    ]
                    results += [future.result(timeout=1800) for future in futures]
                round_s.append(round(time.perf_counter() - began, 1))
                rss_after_round.append(round(process_memory_mb(process.pid, "VmRSS"), 1))
            after = Client(url, verbose=False).predict(
                picture, source, target, "", 1, 0, False, api_name="/edit"
            )[2]
            sampling.set()
            sampler.join()
            big = os.urandom(11 * 1024 * 1024)
            upload = httpx.post(
                f"{url}/gradio_api/upload",
                files={"files": ("big.png", big, "image/png")},
                timeout=60,
            )
            peak_mb = process_memory_mb(process.pid, "VmHWM")
            final_mb = process_memory_mb(process.pid, "VmRSS")
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        server_log = (tmp / "serve.log").read_text(errors="replace")

    answered = [r for r in results if r["outcome"] == "answered"]
    refused = [r for r in results if r["outcome"] == "refused"]
    errors = [r for r in results if r["outcome"] == "error"]
    summary = {
        "date": datetime.date.today().isoformat(),
        "machine": machine_line(),
        "model": "shipped shapes model (default steps)",
        "server": f"lusd serve --max-queue {MAX_QUEUE} --concurrency {CONCURRENCY} "
        f"--max-file-size {MAX_FILE_SIZE}",
        "users_per_round": users,
        "rounds": rounds,
        "requests": len(results),
        "accepted": len(answered),
        "rejected_busy": len(refused),
        "errors": len(errors),
        "error_details": sorted({r["detail"] for r in errors}),
        "busy_message": refused[0]["detail"] if refused else None,
        "wait_answered_s": _percentiles([r["wait_s"] for r in answered]),
        "queue_wait_answered_s": _percentiles(
            [r["queue_wait_s"] for r in answered if r["queue_wait_s"] is not None]
        ),
        "time_to_refusal_s": _percentiles([r["wait_s"] for r in refused]),
        "round_wall_s": round_s,
        "server_rss_idle_mb": round(idle_mb, 1),
        "server_rss_peak_mb": round(max([peak_mb, *samples]), 1),
        "server_rss_after_each_round_mb": rss_after_round,
        "server_rss_at_end_mb": round(final_mb, 1),
        "healthy_after": after.startswith("Done"),
        "oversized_upload_status": upload.status_code,
        "oversized_upload_message": upload.text[:200],
        "server_exit_code": process.returncode,
        "traceback_in_server_log": "Traceback" in server_log,
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    if errors or len(answered) + len(refused) != len(results) or not answered:
        raise SystemExit("load run had errors or unanswered requests")


if __name__ == "__main__":
    main()
