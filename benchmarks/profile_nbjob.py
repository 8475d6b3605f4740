"""Stage timeline of 3-cell notebook jobs on the embedded runner: host events
(pending/assigning/running/completed) merged with the job's ``KRLAB_NBJOB_TRACE`` stamps.

``python -m benchmarks.profile_nbjob [RUNS]``
"""

import os
import re
import sys
import time

os.environ["KRLAB_NBJOB_TRACE"] = "1"
from benchmarks._common import API, running_host, wait_node_online
from benchmarks.notebook_jobs import _nb

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3
with running_host(embedded=True) as host, host.client(timeout=60) as client:
    wait_node_online(client)
    for run in range(N):
        wall0 = time.time()
        r = client.post(
            f"{API}/tasks",
            json={"task_type": "notebook", "notebook": _nb(3), "parameters": {"x": 2}, "cores": 1},
        )
        tid = r.json()["task_ids"][0]
        t_sub = time.time()
        while client.get(f"{API}/tasks/{tid}").json()["status"] not in ("completed", "failed"):
            time.sleep(0.01)
        t_seen = time.time()
        ev = client.get(f"{API}/tasks/{tid}/events").json()["events"]
        stamps = [("submit called", wall0), ("submit returned", t_sub)]
        stamps += [(f"event {e['to_status']}", e["at"]) for e in ev]
        time.sleep(0.3)
        text = client.get(f"{API}/tasks/{tid}/logs", params={"stream": "stderr"}).json()["data"]
        for line in text.splitlines():
            m = re.match(r"nbjob-trace ([\d.]+) (.*)", line)
            if m:
                stamps.append(("nbjob " + m.group(2), float(m.group(1))))
                mm = re.search(r"process started at ([\d.]+)", line)
                if mm:
                    stamps.append(("nbjob process started", float(mm.group(1))))
        stamps.append(("client saw final", t_seen))
        stamps.sort(key=lambda x: x[1])
        print(f"--- run {run} task {tid}")
        prev = wall0
        for name, t in stamps:
            print(f"{t - wall0:7.3f}  +{t - prev:6.3f}  {name}")
            prev = t
