#!/usr/bin/env python3
"""Runs every query of deploy/grafana/apus.json in a real Prometheus that scrapes a real apus
carrying traffic, as Grafana would send them, and fails on an error or an empty answer.

Prometheus is Debian's (`prometheus`, `promtool`), on loopback, scraping once a second into a
temporary directory; $__rate_interval is 5s, four scrape intervals as Grafana computes it.
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apus_proc import Apus, free_port_pair, scratch_dir  # noqa: E402
from check_dashboard import DASHBOARD, dashboard_queries, grafana_to_promql  # noqa: E402

RATE_INTERVAL = "5s"
failures = []


def fail(message):
    failures.append(message)
    print("  FAIL " + message)


def api(port, path, **params):
    url = f"http://127.0.0.1:{port}/api/v1/{path}?" + urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def publish_steadily(port, stop):
    """A message every 50 ms until stop is set, so that the rates are not all zero."""
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="prometheus-check-pub")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    i = 0
    while not stop.is_set():
        pub.publish(f"prom/check/{i % 3}", str(i), qos=i % 2)
        i += 1
        time.sleep(0.05)
    pub.loop_stop()
    pub.disconnect()


def main():
    with open(DASHBOARD) as f:
        queries = dashboard_queries(json.load(f))
    work = scratch_dir("apus-prometheus-")
    with Apus(lambda m, h: f"listener {m} 127.0.0.1\nhttp_listener {h}\n") as broker:
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="prometheus-check-sub")
        sub.connect("127.0.0.1", broker.mqtt_port)
        sub.subscribe("prom/#", qos=1)
        sub.loop_start()
        stop = threading.Event()
        publisher = threading.Thread(target=publish_steadily, args=(broker.mqtt_port, stop))
        publisher.start()

        prom_port = free_port_pair()[0]
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: apus\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{broker.http_port}']\n")
        check = subprocess.run(["promtool", "check", "config", config], capture_output=True, text=True)
        if check.returncode != 0:
            fail("promtool check config: " + check.stdout + check.stderr)
        log = open(os.path.join(work, "prometheus.log"), "w")
        prom = subprocess.Popen(["prometheus", f"--config.file={config}",
                                 f"--storage.tsdb.path={work}/data",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            # Enough scrapes for a rate over RATE_INTERVAL: up for 6 s.
            deadline = time.monotonic() + 30
            scrapes = 0
            while time.monotonic() < deadline and scrapes < 6:
                time.sleep(0.5)
                try:
                    r = api(prom_port, "query", query='count_over_time(up{job="apus"}[1m])')
                    result = r["data"]["result"]
                    scrapes = int(float(result[0]["value"][1])) if result else 0
                except OSError:
                    pass
            print(f"  Prometheus {prom_port} has {scrapes} scrapes of apus {broker.http_port}")
            if scrapes < 6:
                fail("Prometheus did not scrape apus:\n" + open(log.name).read()[-2000:])
            bad = 0
            for where, expr in queries:
                promql = grafana_to_promql(expr, RATE_INTERVAL)
                try:
                    r = api(prom_port, "query", query=promql)
                except urllib.error.HTTPError as e:
                    bad += 1
                    fail(f"{where}: {promql}: HTTP {e.code}: {e.read().decode()[:300]}")
                    continue
                result = r.get("data", {}).get("result", [])
                if r.get("status") != "success" or not result:
                    bad += 1
                    fail(f"{where}: {promql}: {r.get('status')}, {len(result)} series")
            print(f"  {len(queries) - bad} of {len(queries)} queries answered with data")
            # The variable's own call, as Grafana makes it for label_values(metric, label).
            values = api(prom_port, "label/instance/values", **{"match[]": "apus_build_info"})["data"]
            print(f"  label_values(apus_build_info, instance): {values}")
            if values != [f"127.0.0.1:{broker.http_port}"]:
                fail(f"label_values(apus_build_info, instance) gave {values}")
            rate = api(prom_port, "query",
                       query=f"sum(rate(apus_messages_received_total[{RATE_INTERVAL}]))")["data"]["result"]
            if not rate or float(rate[0]["value"][1]) <= 0:
                fail(f"messages in per second is {rate} while a client publishes 20 a second")
            else:
                print(f"  messages in per second: {float(rate[0]['value'][1]):.1f}")
        finally:
            prom.terminate()
            prom.wait(timeout=10)
            stop.set()
            publisher.join()
            sub.loop_stop()
            sub.disconnect()
    if failures:
        print(f"check_prometheus: {len(failures)} problem(s)")
        return 1
    print("check_prometheus: every dashboard query answers in Prometheus")
    return 0


if __name__ == "__main__":
    sys.exit(main())
