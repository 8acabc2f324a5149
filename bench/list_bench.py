"""List-page benchmark (spec 10, L1–L5 and T): ClientDesk against a stock FAB ModelView, same data,
same run, interleaved. Prints medians, p95 and ratios. Not a test: it never fails, it reports.

    .venv/bin/python bench/seed_million.py                 # once: 1M clients in clientdesk_bench
    .venv/bin/python bench/list_bench.py --rounds 20

Both apps are served by gunicorn with 2 sync workers and used logged in as an admin (widest scope).
"""

import argparse
import http.cookiejar
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv", "bin", "python")
GUNICORN = os.path.join(ROOT, ".venv", "bin", "gunicorn")


def workloads(surname, ours_filter):
    return {
        "L1 first page (created desc)": ("/clients/list/",
                                         "/clientstockview/list/"),
        "L2 search 'gmail'": ("/clients/list/?q=gmail",
                              "/clientstockview/list/?_flt_2_email=gmail"),
        "L3 project = X and status = Y": ("/clients/list/?" + ours_filter,
                                          "/clientstockview/list/?_flt_0_project=3&_flt_0_status=3"),
        "L4 page 2,000": ("/clients/list/?page_ClientModelView=2000",
                          "/clientstockview/list/?page_ClientStockView=2000"),
        f"L5 search surname '{surname}'": (f"/clients/list/?q={surname}",
                                           f"/clientstockview/list/?_flt_2_last_name={surname}"),
    }


class Session:
    def __init__(self, base):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path):
        started = time.perf_counter()
        with self.opener.open(self.base + path, timeout=60) as response:
            body = response.read()
        return time.perf_counter() - started, response.status, body

    def login(self, username, password):
        _, _, body = self.get("/login/")
        match = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', body)
        form = {"username": username, "password": password}
        if match:
            form["csrf_token"] = match.group(1).decode()
        data = urllib.parse.urlencode(form).encode()
        with self.opener.open(self.base + "/login/", data=data, timeout=60) as response:
            response.read()
        return self


def serve(app_spec, port, env):
    return subprocess.Popen([GUNICORN, "--workers", "2", "--worker-class", "sync", "--bind", f"127.0.0.1:{port}",
                             "--timeout", "120", "--log-level", "warning", app_spec], cwd=ROOT, env=env)


def wait_up(base, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(base + "/login/", timeout=5).read()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{base} did not start")


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def throughput(base, path, username, password, threads=8, seconds=10.0):
    sessions = [Session(base).login(username, password) for _ in range(threads)]
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def run(i):
        while time.perf_counter() < stop:
            sessions[i].get(path)
            done[i] += 1
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(done) / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/clientdesk_bench")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--surname", default="Kowalski")
    parser.add_argument("--ours-filter", default="project=3&status=3",
                        help="query string of ClientDesk's project + status filter")
    parser.add_argument("--throughput-seconds", type=float, default=10.0)
    args = parser.parse_args()

    env = dict(os.environ, DATABASE_URL=args.url, BENCH_DATABASE_URL=args.url, PYTHONPATH=ROOT,
               SECRET_KEY="bench-secret-key-0123456789abcdef0123456789", FAB_UPDATE_PERMS="0",
               RATELIMIT_ENABLED="0", SESSION_IDLE_MINUTES="0")
    # Bring the bench database to the code's schema, then register the stock view's permissions once.
    subprocess.run([os.path.join(ROOT, ".venv", "bin", "flask"), "--app", "run:app", "db", "upgrade", "heads"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([PY, "-c", "from bench.stock_fab import create_stock_app; create_stock_app()"], cwd=ROOT,
                   env=dict(env, STOCK_UPDATE_PERMS="1"), check=True, capture_output=True)
    ours_port, stock_port = 5101, 5102
    servers = [serve("run:app", ours_port, env), serve("bench.stock_fab:create_stock_app()", stock_port, env)]
    try:
        ours_base, stock_base = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{stock_port}"
        wait_up(ours_base)
        wait_up(stock_base)
        ours = Session(ours_base).login("bench", "Bench-pass-1!")
        stock = Session(stock_base).login("bench", "Bench-pass-1!")
        loads = workloads(args.surname, args.ours_filter)
        timings = {name: {"ours": [], "stock": []} for name in loads}
        for ours_path, stock_path in loads.values():  # warm-up, and a check that both answer
            for side, session, path in (("ours", ours, ours_path), ("stock", stock, stock_path)):
                _, status, body = session.get(path)
                if status != 200 or b"login" in body[:2000].lower() and b"logout" not in body.lower():
                    print(f"warning: {side} {path} answered {status}")
        for r in range(args.rounds):
            for name, (ours_path, stock_path) in loads.items():
                pair = [("ours", ours, ours_path), ("stock", stock, stock_path)]
                for side, session, path in (pair if r % 2 == 0 else pair[::-1]):
                    elapsed, _, _ = session.get(path)
                    timings[name][side].append(elapsed * 1000)
        total = []
        if os.environ.get("BENCH_TOTAL_PATH"):
            for _ in range(args.rounds):
                total.append(ours.get(os.environ["BENCH_TOTAL_PATH"])[0] * 1000)
        print(f"\nList pages, {args.rounds} interleaved rounds, ms (median / p95), ratio = stock median / ours median")
        print(f"{'workload':38} {'stock med':>10} {'stock p95':>10} {'ours med':>10} {'ours p95':>10} {'ratio':>7}")
        for name, sides in timings.items():
            sm, sp = statistics.median(sides["stock"]), pct(sides["stock"], 0.95)
            om, op = statistics.median(sides["ours"]), pct(sides["ours"], 0.95)
            print(f"{name:38} {sm:10.1f} {sp:10.1f} {om:10.1f} {op:10.1f} {sm / om:7.1f}")
        if total:
            print(f"{'exact Total endpoint (ours)':38} {'':10} {'':10} {statistics.median(total):10.1f} "
                  f"{pct(total, 0.95):10.1f}")
        t_ours = throughput(ours_base, loads["L1 first page (created desc)"][0], "bench", "Bench-pass-1!",
                            seconds=args.throughput_seconds)
        t_stock = throughput(stock_base, loads["L1 first page (created desc)"][1], "bench", "Bench-pass-1!",
                             seconds=args.throughput_seconds)
        print(f"T throughput, 8 concurrent clients on L1: stock {t_stock:.1f} req/s, ours {t_ours:.1f} req/s, "
              f"ratio {t_ours / t_stock:.1f}")
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
