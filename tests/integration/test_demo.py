"""`segstream demo` from a machine with no servers running: infrastructure, API, workers,
the synthetic camera, events in the terminal and the viewer page in a real browser (Debian's
Chromium, headless, through Selenium), then Ctrl-C and nothing left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from services.common.settings import Settings
from services.infra.process import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("SEGSTREAM_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def processes_of(run_dir: Path) -> list[int]:
    """Pids of processes started with this run folder in their environment."""
    marker = f"SEGSTREAM_RUN_DIR={run_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,700"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def test_demo_shows_masks_in_a_browser_and_stops_cleanly(
    make_settings: Callable[[Path], Settings], tmp_path: Path, compiled_ops: None
) -> None:
    run_dir = tmp_path / "run"
    settings = make_settings(run_dir)
    settings = settings.model_copy(
        update={"api_port": free_port(), "metrics_port": 0, "cache_dir": settings.cache_dir}
    )
    env = {**os.environ, **settings.env(), "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    output = demo.stdout
    assert output is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(output.readline, "")), daemon=True)
    reader.start()
    driver = None
    try:
        deadline = time.monotonic() + 240
        while not sum(1 for line in lines if re.match(r"^\d+-\d+ seq=", line)) >= 5:
            assert demo.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.5)
        viewer = next(line.split(" ", 1)[1].strip() for line in lines if line.startswith("viewer:"))
        events = [line for line in lines if re.match(r"^\d+-\d+ seq=", line)]
        assert any("iou=" in line for line in events)

        driver = browser()
        driver.get(viewer)
        WebDriverWait(driver, 60).until(
            lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-drawn") or 0) >= 3
        )
        drawn = driver.execute_script("return window.segstream")
        assert drawn["stream"] == "demo-camera" and drawn["instances"] > 0
        # mask pixels: the palette's colours blended over the frame, somewhere on the canvas
        tinted = driver.execute_script(
            """
            const c = document.getElementById('view');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) {
              const hi = Math.max(d[i], d[i + 1], d[i + 2]);
              if (hi - Math.min(d[i], d[i + 1], d[i + 2]) > 60) n++;
            }
            return [c.width, c.height, n];
            """
        )
        assert tinted[:2] == [320, 240] and tinted[2] > 200
        WebDriverWait(driver, 30).until(
            lambda d: "running" in d.find_element(By.ID, "streams").text
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "viewer.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        if driver is not None:
            driver.quit()
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=90)
        reader.join(timeout=5)
    assert code == 0, "".join(lines[-40:])
    assert "stopped: " in "".join(lines)
    # a stopped process leaves /proc once it is reaped, which may follow the demo's exit
    deadline = time.monotonic() + 10
    while (left := processes_of(run_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []
