"""The README's path from a fresh clone to real answers, run as written on a copy of the repository.

`make run` in one process (installing from uv.lock into the copy's own .venv), then
the README's second block in another shell, exactly as printed there. Only the
listen addresses differ, through the environment variables the README documents, so
the test never collides with an aggregator already running on the default ports.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.aggregator_fixtures import free_port

ROOT = Path(__file__).resolve().parents[2]
PATH_HEADING = "## From a fresh clone to real answers"
INSTALL_AND_START_S = 600  # a cold uv cache downloads every wheel


def readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def copy_of_repository(target: Path) -> Path:
    """The files a fresh clone has (tracked, plus new files not yet committed), none of the local state."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture
def clone_with_make_run(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    clone = copy_of_repository(tmp_path / "kong-ai-chargeback")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHARGEBACK_", "VIRTUAL_ENV", "UV_"))}
    http, grpc = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env |= {"CHARGEBACK_HTTP_LISTEN": http, "CHARGEBACK_GRPC_LISTEN": grpc}
    log = (tmp_path / "make-run.log").open("wb")
    run = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(f"http://{http}/readyz", run, tmp_path / "make-run.log")
        yield clone, env
    finally:
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C in the terminal: the aggregator drains and exits
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        log.close()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import time

    deadline = time.monotonic() + INSTALL_AND_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"make run exited with {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"make run was not ready within {INSTALL_AND_START_S} s:\n{log.read_text(errors='replace')[-4000:]}")


@pytest.mark.slow
def test_the_readme_path_ends_in_real_answers(clone_with_make_run: tuple[Path, dict[str, str]]) -> None:
    clone, env = clone_with_make_run
    block = readme_block(PATH_HEADING)
    assert "make demo" in block and "chargeback report" in block, block
    # Each command echoed before it runs, so the output can be split per command; no `set -e`:
    # report and readiness exit 1 on findings by design, and the test reads every answer.
    shell = subprocess.run(["bash", "-x", "-c", block], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    out, trace = shell.stdout, shell.stderr
    assert "Traceback" not in out + trace, trace[-4000:]

    assert "requests metered and stored" in out, trace[-4000:]
    sent = int(re.search(r"(\d+) requests metered and stored", out).group(1))  # type: ignore[union-attr]
    totals = re.findall(r"^\s+TOTAL\s+(\d+)\s", out, re.MULTILINE)
    # make demo prints the report once, then the README's own `chargeback report` prints it again.
    assert totals and all(int(events) == sent for events in totals), out
    assert "no usage recorded" not in out

    statement = clone / "payments.html"
    assert statement.is_file(), trace[-4000:]
    page = statement.read_text(encoding="utf-8")
    assert "payments" in page and "<svg" in page and "no usage recorded" not in out.split("statement", 1)[-1]

    assert "Chargeback readiness" in out and "verdict:" in out
    requests_line = re.search(r"^\s+requests\s+(\d+)\s", out, re.MULTILINE)
    assert requests_line and int(requests_line.group(1)) == sent, out
