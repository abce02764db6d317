"""Load on the Space: N concurrent gradio_client users on 127.0.0.1, each sending photos to `/analyze_photo`.

    python benchmarks/space_load.py --model runs/etfuser-synthetic/model            # starts the app itself
    python benchmarks/space_load.py --url http://127.0.0.1:7860/ --clients 8        # an app already running here

Prints the single-request latency (median of sequential requests on an idle app) and the one-client throughput (those
sequential requests per second of their wall time), then for the concurrent run p50 and p95 latency, throughput and
errors, p95 / single, and the throughput at N clients over the one-client throughput, both measured in this run.
Goal (issue 22): 0 errors at 8 clients, p95 <= 3x single; issue 32: more requests/s at 8 clients than at 1 (the app's
--concurrency analyses at once).
Every photo is the astronaut shifted by a different number of pixels, so no two requests are the same file.
Bounded: at most 64 requests and --time-limit seconds; only 127.0.0.1 / localhost URLs are accepted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import PIL.Image
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spaces" / "et-fuser"))
from screenshot import running_app  # noqa: E402

MAX_REQUESTS = 64
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def photos(folder: Path, count: int) -> list[Path]:
    astronaut = skimage.data.astronaut()
    paths = []
    for index in range(count):
        path = folder / f"astronaut_{index:02d}.png"
        PIL.Image.fromarray(np.roll(astronaut, 2 * index, axis=1)).save(path)
        paths.append(path)
    return paths


def request(client, model: str, photo: Path) -> tuple[float, str | None]:
    """(seconds, None) or (seconds, why it failed): an answer without a face counts as an error."""
    from gradio_client import handle_file

    start = time.perf_counter()
    try:
        message = client.predict(handle_file(str(photo)), model, api_name="/analyze_photo")[1]
    except Exception as error:  # noqa: BLE001 - counted, not raised
        return time.perf_counter() - start, f"{type(error).__name__}: {error}"
    return time.perf_counter() - start, None if "face found" in message else message


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def run(url: str, model: str, clients: int, per_client: int, single_requests: int, time_limit: float) -> dict:
    from gradio_client import Client

    total = clients * per_client
    deadline = time.monotonic() + time_limit
    with tempfile.TemporaryDirectory() as workdir:
        files = photos(Path(workdir), single_requests + 1 + total)
        idle = Client(url, verbose=False)
        request(idle, model, files[0])  # warm-up: the model and detector load on the first request
        start = time.perf_counter()
        single = [request(idle, model, photo)[0] for photo in files[1:1 + single_requests]]
        single_rps = single_requests / (time.perf_counter() - start)
        users = [Client(url, verbose=False) for _ in range(clients)]
        batches = [files[1 + single_requests + user * per_client:1 + single_requests + (user + 1) * per_client]
                   for user in range(clients)]

        def user_session(user: int) -> list[tuple[float, str | None]]:
            results = []
            for photo in batches[user]:
                if time.monotonic() > deadline:
                    results.append((float("nan"), "time limit reached before sending"))
                    continue
                results.append(request(users[user], model, photo))
            return results

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = [result for session in pool.map(user_session, range(clients)) for result in session]
        wall = time.perf_counter() - start
    latencies = [seconds for seconds, error in results if error is None]
    errors = [error for _, error in results if error is not None]
    single_latency = statistics.median(single)
    p95 = percentile(latencies, 95) if latencies else float("nan")
    throughput = len(latencies) / wall
    return {"clients": clients, "requests": total, "single_s": single_latency, "p50_s": percentile(latencies, 50)
            if latencies else float("nan"), "p95_s": p95, "throughput_rps": throughput, "errors": errors,
            "p95_over_single": p95 / single_latency, "single_rps": single_rps,
            "throughput_over_single": throughput / single_rps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", default=None, help="a running app on 127.0.0.1 (default: start one)")
    parser.add_argument("--model", default="runs/etfuser-synthetic/model", help="the model folder to serve / pick")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--single-requests", type=int, default=5, help="sequential requests for the single latency")
    parser.add_argument("--max-batch-size", type=int, default=None, help="the started app's --max-batch-size")
    parser.add_argument("--concurrency", type=int, default=None, help="the started app's --concurrency")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds; later requests are not sent")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests_per_client < 1 or args.single_requests < 1:
        parser.error("--clients, --requests-per-client and --single-requests must be >= 1.")
    if args.clients * args.requests_per_client > MAX_REQUESTS:
        parser.error(f"--clients x --requests-per-client: at most {MAX_REQUESTS} requests, "
                     f"got {args.clients * args.requests_per_client}.")
    if args.url is not None and urlparse(args.url).hostname not in LOCAL_HOSTS:
        parser.error(f"--url: only an app on 127.0.0.1 / localhost, got {args.url!r}.")
    app_arguments = (("--max-batch-size", str(args.max_batch_size)) if args.max_batch_size else ()) + (
        ("--concurrency", str(args.concurrency)) if args.concurrency else ())
    with (nullcontext(args.url) if args.url else running_app(args.model, arguments=app_arguments)) as url:
        report = run(url, str(Path(args.model).resolve()) if not args.url else args.model, args.clients,
                     args.requests_per_client, args.single_requests, args.time_limit)
    print(f"single request (idle app, median of {args.single_requests}): {report['single_s']:.3f} s, "
          f"1 client: {report['single_rps']:.2f} req/s")
    print(f"{report['clients']} concurrent clients, {report['requests']} requests: p50 {report['p50_s']:.3f} s, "
          f"p95 {report['p95_s']:.3f} s, throughput {report['throughput_rps']:.2f} req/s, "
          f"errors {len(report['errors'])}")
    print(f"p95 / single: {report['p95_over_single']:.2f} (goal <= 3)")
    print(f"req/s at {report['clients']} clients / at 1 client: {report['throughput_over_single']:.2f}")
    for error in report["errors"][:5]:
        print(f"  error: {error}")


if __name__ == "__main__":
    main()
