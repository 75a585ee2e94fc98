"""Load bench of `guided serve`: 50 concurrent API clients against tiny models, on loopback only.

Each round, 50 threads POST a job at once (a tiny stylize job); accepted jobs are polled to their end;
refused ones must be 429 with Retry-After. Reported: submit latency p50/p95, job latency (submit to
final status) p50/p95, 429 count, resident memory after each round (flat = no leak), and whether
every accepted job ended `done` or `failed` with its record on disk (nothing lost). Bounded: every
wait has a deadline; the server binds 127.0.0.1.

    python bench/bench_serve.py [--clients 50] [--rounds 3] [--queue 8]
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

OPTIONS = {"prompt": "an oil painting", "steps": 4, "strength": 0.5, "size": 32}
JOB_DEADLINE_S = 600


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def multipart(image: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [(b'Content-Disposition: form-data; name="image"; filename="p.png"\r\nContent-Type: image/png', image),
             (b'Content-Disposition: form-data; name="options"', json.dumps(OPTIONS).encode())]
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + head + b"\r\n\r\n" + data + b"\r\n" for head, data in parts)
    return body + b"--" + boundary.encode() + b"--\r\n", f"multipart/form-data; boundary={boundary}"


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def client(port: int, body: bytes, ctype: str, results: list, start: threading.Barrier) -> None:
    start.wait()
    t0 = time.perf_counter()
    status, headers, data = request(port, "POST", "/api/v1/jobs", body, {"Content-Type": ctype})
    submitted = time.perf_counter() - t0
    row = {"status": status, "submit_s": submitted, "retry_after": headers.get("retry-after")}
    if status == 202:
        job_id = json.loads(data)["id"]
        deadline = time.monotonic() + JOB_DEADLINE_S
        while time.monotonic() < deadline:
            _, _, data = request(port, "GET", f"/api/v1/jobs/{job_id}")
            record = json.loads(data)
            if record["status"] in ("done", "failed", "cancelled"):
                break
            time.sleep(0.1)
        row.update(id=job_id, final=record["status"], job_s=time.perf_counter() - t0)
    results.append(row)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queue", type=int, default=8)
    args = ap.parse_args()

    import socket

    import torch
    from factories import photo

    from guided.serve.app import create_app, serving_in_background
    from guided.serve.config import ServeConfig
    from guided.stylize import Stylizer

    torch.set_num_threads(1)
    import io

    buffer = io.BytesIO()
    photo(48, 64).save(buffer, format="PNG")
    body, ctype = multipart(buffer.getvalue())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    app = create_app(ServeConfig(tiny=True, out=out, port=port, queue=args.queue),
                     stylizer=Stylizer.load(tiny=True), ui=False)
    with serving_in_background(app, port):
        print(f"server on 127.0.0.1:{port}, tiny models, queue {args.queue}, {args.clients} clients x {args.rounds} "
              f"rounds; RSS at start {rss_mb():.0f} MB")
        every = []
        for n in range(1, args.rounds + 1):
            results: list[dict] = []
            start = threading.Barrier(args.clients)
            threads = [threading.Thread(target=client, args=(port, body, ctype, results, start))
                       for _ in range(args.clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(JOB_DEADLINE_S + 60)
            accepted = [r for r in results if r["status"] == 202]
            refused = [r for r in results if r["status"] == 429]
            assert all(r["retry_after"] for r in refused), "a 429 without Retry-After"
            print(f"round {n}: {len(accepted)} accepted, {len(refused)} got 429, "
                  f"{len(results) - len(accepted) - len(refused)} other; "
                  f"submit p50 {pct([r['submit_s'] for r in results], .5) * 1000:.0f} ms "
                  f"p95 {pct([r['submit_s'] for r in results], .95) * 1000:.0f} ms; "
                  f"job p50 {pct([r['job_s'] for r in accepted], .5):.2f} s "
                  f"p95 {pct([r['job_s'] for r in accepted], .95):.2f} s; "
                  f"ended {dict(statistics.Counter(r['final'] for r in accepted))}; "
                  f"{time.perf_counter() - t0:.1f} s; RSS {rss_mb():.0f} MB")
            every += accepted
        on_disk = {p.parent.name: json.loads(p.read_text())["status"] for p in (out / "jobs").glob("*/job.json")}
        lost = [r["id"] for r in every if on_disk.get(r["id"]) not in ("done", "failed")]
        results_ok = all((out / "jobs" / r["id"] / "result.png").is_file() for r in every if r["final"] == "done")
        print(f"nothing lost: {not lost and results_ok} ({len(every)} accepted jobs, {len(on_disk)} records on disk, "
              f"every done job has its PNG: {results_ok})")
    return 0 if not lost and results_ok else 1


if __name__ == "__main__":
    sys.exit(main())
