#!/usr/bin/env python3
"""Checks deploy/grafana/apus.json against a real apus: every metric and label its PromQL uses
must be in what /metrics serves.

The expressions are parsed with promql-parser (Prometheus' grammar, Grafana's $variables
replaced first); the /metrics text with prometheus_client's parser, after a paho client has
published through the broker so that the scrape is of a broker that has carried traffic.
"""

import json
import os
import re
import sys
import time

import paho.mqtt.client as mqtt
import promql_parser
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apus_proc import REPO, Apus, http_get  # noqa: E402

DASHBOARD = os.environ.get("APUS_DASHBOARD", os.path.join(REPO, "deploy/grafana/apus.json"))
# Labels Prometheus adds to every scraped series; /metrics does not carry them.
TARGET_LABELS = {"instance", "job"}
PUBLISHED = 20

failures = []


def fail(message):
    failures.append(message)
    print("  FAIL " + message)


def grafana_to_promql(expr, rate_interval="1m"):
    """Grafana's macros and variables as Prometheus would receive them (multi-value variables
    set to All: their allValue, .*)."""
    expr = re.sub(r"\$__(rate_)?interval\b", rate_interval, expr)
    expr = re.sub(r"\$__range\b", "1h", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def references(expr):
    """(metric names, label names) an expression reads."""
    metrics, labels = set(), set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers
            for m in matchers:
                if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal:
                    metrics.add(m.value)
                elif m.name != "__name__":
                    labels.add(m.name)
            if node.name:
                metrics.add(node.name)
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            matching = node.modifier.matching
            if matching is not None:
                labels.update(matching.labels)

    promql_parser.walk(promql_parser.parse(grafana_to_promql(expr)), visit)
    return metrics, labels


def self_test():
    """The extractor finds what a reader would, so that an empty result cannot pass."""
    got = references('sum by (reason) (rate(a_total{instance=~"$instance",shard="0"}[$__rate_interval]))'
                     ' / on (instance) group_left b + {__name__="c"} + max_over_time(d[5m:1m])')
    want = ({"a_total", "b", "c", "d"}, {"reason", "instance", "shard"})
    if got != want:
        fail(f"extractor self-test: got {got}, want {want}")


def dashboard_queries(dash):
    """(where, PromQL) for every panel target and every query variable."""
    queries = []
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", q)
        if m:
            queries.append((f"variable {var['name']}", m.group(1)))
            queries.append((f"variable {var['name']} label", f"count by ({m.group(2)}) ({m.group(1)})"))
        elif q:
            queries.append((f"variable {var['name']}", q))

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                if t.get("expr"):
                    queries.append((f"panel {p['id']} '{p['title']}' {t.get('refId')}", t["expr"]))
    walk(dash.get("panels", []))
    return queries


def check_structure(dash):
    if not 36 <= dash.get("schemaVersion", 0) <= 41:
        fail(f"schemaVersion {dash.get('schemaVersion')} is not a Grafana 9/10/11 dashboard")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        fail("no 'datasource' template variable of Prometheus data sources")
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        fail(f"panel ids repeat: {ids}")
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        where = f"panel {p['id']} '{p['title']}'"
        if p.get("datasource", {}).get("uid") != "${datasource}":
            fail(f"{where}: datasource is not ${{datasource}}")
        if not p.get("targets"):
            fail(f"{where}: no query")
        refs = [t.get("refId") for t in p.get("targets", [])]
        if len(refs) != len(set(refs)):
            fail(f"{where}: refIds repeat")
        if not {"x", "y", "w", "h"} <= set(p.get("gridPos", {})):
            fail(f"{where}: no gridPos")


def scrape_after_traffic():
    """A real apus, PUBLISHED messages through it, then its /metrics as {name: {labels}}."""
    with Apus(lambda mqtt_port, http_port:
              f"listener {mqtt_port} 127.0.0.1\nhttp_listener {http_port}\n") as broker:
        received = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="deploy-check-sub")
        sub.on_message = lambda c, u, msg: received.append(msg.payload)
        sub.connect("127.0.0.1", broker.mqtt_port)
        sub.subscribe("deploy/check/#", qos=1)
        sub.loop_start()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="deploy-check-pub")
        pub.connect("127.0.0.1", broker.mqtt_port)
        pub.loop_start()
        time.sleep(0.3)  # the SUBACK
        for i in range(PUBLISHED):
            pub.publish(f"deploy/check/{i % 4}", f"m{i}", qos=i % 2).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while len(received) < PUBLISHED and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(received) != PUBLISHED:
            fail(f"subscriber got {len(received)} of {PUBLISHED} messages")
        # Shards copy their counters to the stats board once a second.
        time.sleep(1.2)
        status, text = http_get(broker.http_port, "/metrics")
        for c in (pub, sub):
            c.loop_stop()
            c.disconnect()
    if status != 200:
        fail(f"/metrics answered {status}")
    served = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            served.setdefault(sample.name, set()).update(sample.labels)
            if sample.name == "apus_messages_received_total" and sample.value < PUBLISHED:
                fail(f"apus_messages_received_total is {sample.value} after {PUBLISHED} PUBLISHes")
    return served


def main():
    self_test()
    with open(DASHBOARD) as f:
        dash = json.load(f)
    check_structure(dash)
    queries = dashboard_queries(dash)
    served = scrape_after_traffic()
    print(f"  /metrics served {len(served)} series names; the dashboard has {len(queries)} queries")
    used = set()
    for where, expr in queries:
        try:
            metrics, labels = references(expr)
        except (ValueError, SyntaxError) as e:
            fail(f"{where}: not PromQL: {expr!r}: {e}")
            continue
        if not metrics:
            fail(f"{where}: reads no metric: {expr!r}")
        used |= metrics
        for name in sorted(metrics - served.keys()):
            fail(f"{where}: metric {name} is not in /metrics")
        known = set().union(*(served.get(m, set()) for m in metrics)) | TARGET_LABELS
        for label in sorted(labels - known):
            fail(f"{where}: label {label} is on none of {sorted(metrics)}")
    print(f"  metrics used ({len(used)}): {' '.join(sorted(used))}")
    if failures:
        print(f"check_dashboard: {len(failures)} problem(s)")
        return 1
    print("check_dashboard: every metric and label the dashboard uses is served by apus")
    return 0


if __name__ == "__main__":
    sys.exit(main())
