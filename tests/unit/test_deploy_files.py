"""The deploy files start ClientDesk's own processes."""

import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_compose_worker_is_clientdesks_own():
    """A plain `rq worker` reads jobs with pickle (ours are JSON, R33), runs no scheduler for the
    retry intervals (R31) and no reconciler of lost imports: the service runs `flask clientdesk
    worker`, the one the RQ integration tests start."""
    with open(os.path.join(ROOT, "docker", "compose.yml")) as fh:
        text = fh.read()
    block = re.search(r"^  worker:\n(.*?)(?=^  \S|\Z)", text, re.M | re.S).group(1)
    command = re.search(r"^    command: (.*)$", block, re.M).group(1)
    assert json.loads(command) == ["flask", "clientdesk", "worker"]
