"""The workers' metrics leave their processes: counters written by separate processes (as Celery's
prefork children do) in COURSE_METRICS_DIR are served merged by `course metrics`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_counters_of_several_processes_are_served_merged(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "COURSE_METRICS_DIR": str(metrics_dir), "COURSE_VAR_DIR": str(tmp_path)}
    count_in_a_child = (
        "from course.ops import metrics; metrics.SMTP_REPLIES.labels('2xx').inc(3); metrics.SMTP_REPLIES.labels('4xx').inc();"
        "metrics.SEND_LATENCY.labels('campaign').observe(1.5)"
    )
    for _ in range(2):  # two processes, like two prefork children
        subprocess.run([sys.executable, "-c", count_in_a_child], env=environment, check=True, timeout=60)
    port = free_port()
    exporter = subprocess.Popen(
        [str(VENV_BIN / "course"), "metrics", "--port", str(port)], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    body = response.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert 'course_smtp_replies_total{code_class="2xx"} 6.0' in body, body[:2000]
        assert 'course_smtp_replies_total{code_class="4xx"} 2.0' in body
        assert 'course_send_latency_seconds_count{kind="campaign"} 2.0' in body
    finally:
        exporter.terminate()
        exporter.wait(10)


def test_the_exporter_needs_its_folder(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k not in ("COURSE_METRICS_DIR", "PROMETHEUS_MULTIPROC_DIR")}
    result = subprocess.run(
        [str(VENV_BIN / "course"), "metrics"], env={**environment, "COURSE_VAR_DIR": str(tmp_path)}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "COURSE_METRICS_DIR" in result.stderr
