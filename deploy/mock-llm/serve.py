"""Run the test suite's mock LLM (tests/support/mock_llm.py) as a long-lived server.

The compose stack's stand-in for OpenAI and Anthropic: POST /v1/chat/completions
and /v1/messages, streaming or not, with token counts that are a pure function
of the request (so what lands in ClickHouse can be checked by hand).

    PYTHONPATH=tests/support python deploy/mock-llm/serve.py --port 8081
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from mock_llm import MockLLM

# The mock keeps every request for tests to inspect; a server running for days must not.
FORGET_EVERY_S = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    mock = MockLLM(host=args.host, port=args.port).start()
    print(f"mock LLM listening on {args.host}:{mock.port}", flush=True)
    try:
        while not stop.wait(FORGET_EVERY_S):
            mock.clear()
    finally:
        mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
