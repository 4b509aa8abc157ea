"""Prefect's own history in the embedded daemon stays bounded: the temporary server vacuums events but
not flow runs, so the daemon deletes the flow runs past their retention (flows.embedded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json, sys
from datetime import timedelta
from pathlib import Path
from flows.embedded import configure, prefect_history_kept, start_temporary_server
configure(Path(sys.argv[1]))
start_temporary_server()
from prefect import flow, task
from prefect.client.orchestration import get_client
from flows.embedded import prune_prefect_history

@task
def step():
    return 1

@flow
def tiny():
    return step()

for _ in range(3):
    tiny()
with get_client(sync_client=True) as client:
    before = (len(client.read_flow_runs()), len(client.read_task_runs()))
kept = prune_prefect_history()  # every run ended moments ago: all kept
deleted = prune_prefect_history(timedelta(0), batch=2)  # in batches of 2
with get_client(sync_client=True) as client:
    after = (len(client.read_flow_runs()), len(client.read_task_runs()))
print(json.dumps({"before": before, "kept": kept, "deleted": deleted, "after": after,
                  "retention_s": prefect_history_kept().total_seconds()}))
"""


def test_flow_runs_past_the_retention_are_deleted_with_their_task_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOWCAST_", "PREFECT_"))}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "home")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["before"] == [3, 3] and result["kept"] == 0
    assert result["deleted"] == 3 and result["after"] == [0, 0]
    assert result["retention_s"] == 2 * 24 * 3600
