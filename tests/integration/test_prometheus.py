"""deploy/prometheus and deploy/grafana against a real Prometheus (Debian's `prometheus`):
promtool checks the rules and the scrape config and runs the unit tests of every alert
(rules_test.yml); then a Prometheus started on the loopback scrapes a small static target
(this test's own http.server, serving the series slipway serve and its monitor export,
counters growing with every scrape), loads rules.yml with every rule healthy, fires the
quality-regression alert the target's numbers call for, and answers every query of the
Grafana dashboard (panels, variables, annotations) without error and with data."""

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "slipway.json"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


def promtool(*args):
    return subprocess.run([PROMTOOL, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)


def test_promtool_checks_rules_config_and_unit_tests():
    r = promtool("check", "rules", str(PROM_DIR / "rules.yml"))
    assert r.returncode == 0, r.stdout
    assert "SUCCESS: 7 rules found" in r.stdout
    r = promtool("check", "config", str(PROM_DIR / "prometheus.yml"))
    assert r.returncode == 0, r.stdout
    r = promtool("test", "rules", str(PROM_DIR / "rules_test.yml"))
    assert r.returncode == 0, r.stdout
    # every alert in rules.yml has a test case that expects it firing
    rules = (PROM_DIR / "rules.yml").read_text()
    tests = (PROM_DIR / "rules_test.yml").read_text()
    alerts = [line.split("alert:")[1].strip() for line in rules.splitlines() if line.strip().startswith("- alert:")]
    assert len(alerts) == 7
    for a in alerts:
        assert f"alertname: {a}\n        exp_alerts:\n          - exp_labels" in tests, f"{a} has no firing test case"


def test_promtool_rejects_a_broken_rule(tmp_path):
    """The check above could fail: a rule with a bad expression is refused."""
    bad = tmp_path / "bad.yml"
    bad.write_text((PROM_DIR / "rules.yml").read_text().replace("slipway_drift_detected == 1", "slipway_drift_detected ==="))
    r = promtool("check", "rules", str(bad))
    assert r.returncode == 1


class Target:
    """The series the rules and the dashboard use, as slipway serve would export them."""

    def __init__(self):
        self.scrapes = 0
        self.lock = threading.Lock()

    def text(self):
        with self.lock:
            self.scrapes += 1
            n = self.scrapes
        lines = []
        add = lines.append
        for v, ok, bad in (("1", 100 * n, 0), ("2", 1000 * n, 5 * n)):
            add(f'slipway_requests_total{{model="fmnist",version="{v}",api="predict",code="200"}} {ok}')
            add(f'slipway_requests_total{{model="fmnist",version="{v}",api="predict",code="500"}} {bad}')
            for name in ("request", "queue", "compute"):
                cum = 0
                for le, share in (("0.001", 0.5), ("0.01", 0.4), ("0.1", 0.1)):
                    cum += share * ok
                    add(f'slipway_{name}_duration_seconds_bucket{{model="fmnist",version="{v}",le="{le}"}} {cum:.0f}')
                add(f'slipway_{name}_duration_seconds_bucket{{model="fmnist",version="{v}",le="+Inf"}} {ok}')
                add(f'slipway_{name}_duration_seconds_sum{{model="fmnist",version="{v}"}} {0.004 * ok}')
                add(f'slipway_{name}_duration_seconds_count{{model="fmnist",version="{v}"}} {ok}')
            add(f'slipway_batch_size_bucket{{model="fmnist",version="{v}",le="4"}} {ok // 8}')
            add(f'slipway_batch_size_bucket{{model="fmnist",version="{v}",le="+Inf"}} {ok // 4}')
            add(f'slipway_batch_size_sum{{model="fmnist",version="{v}"}} {ok}')
            add(f'slipway_batch_size_count{{model="fmnist",version="{v}"}} {ok // 4}')
            add(f'slipway_feedback_joined_total{{model="fmnist",version="{v}"}} {ok // 2}')
            add(f'slipway_live_accuracy{{model="fmnist",version="{v}"}} 0.86')
            add(f'slipway_live_accuracy_lower{{model="fmnist",version="{v}"}} 0.84')
            add(f'slipway_live_accuracy_upper{{model="fmnist",version="{v}"}} 0.88')
            add(f'slipway_live_accuracy_floor{{model="fmnist",version="{v}"}} 0.85')
            add(f'slipway_model_loaded{{model="fmnist",version="{v}",default="{"true" if v == "2" else "false"}"}} 1')
            add(f'slipway_model_memory_bytes{{model="fmnist",version="{v}"}} 1234567')
            q = (f'model="fmnist",version="{v}",metric="accuracy",dataset="9f2c41d0aa51"')
            add(f"slipway_model_quality{{{q}}} {0.86 if v == '2' else 0.88}")
            add(f"slipway_model_quality_drop{{{q}}} {0.05 if v == '2' else 0.0}")
            add(f"slipway_model_quality_drop_allowed{{{q}}} 0.02")
        for feature, psi, drifting in (("image", 2.97, 1), ("brightness", 0.04, 0)):
            add(f'slipway_drift_psi{{model="fmnist",feature="{feature}"}} {psi}')
            add(f'slipway_drift_js{{model="fmnist",feature="{feature}"}} {psi / 6}')
            add(f'slipway_drift_ks_pvalue{{model="fmnist",feature="{feature}"}} {0.0 if drifting else 0.7}')
            add(f'slipway_drift_feature_drifting{{model="fmnist",feature="{feature}"}} {drifting}')
        add('slipway_drift_share{model="fmnist"} 0.5')
        add('slipway_drift_detected{model="fmnist"} 1')
        add(f'slipway_rollbacks_total{{model="fmnist"}} {1 if n > 3 else 0}')
        add("slipway_ready 1")
        return "\n".join(lines) + "\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def api(port, path, **params):
    url = f"http://127.0.0.1:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params, doseq=True)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # Prometheus answers 400/422 with a JSON error
        return json.load(e)


@pytest.fixture
def prometheus(tmp_path):
    target = Target()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = target.text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{PROM_DIR / 'rules.yml'}']\n"
        "scrape_configs:\n"
        "  - job_name: slipway\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{httpd.server_address[1]}']}}]\n"
    )
    log = open(tmp_path / "prometheus.log", "w")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        # the first scrape lands 5-6 s after start (RECIPES.md); rates need a few
        deadline = time.time() + 30
        while True:
            try:
                r = api(port, "/api/v1/query", query="count_over_time(slipway_ready[1m])")
                if r["status"] == "success" and r["data"]["result"] and float(r["data"]["result"][0]["value"][1]) >= 5:
                    break
            except (OSError, ValueError):
                pass
            if time.time() > deadline:
                pytest.fail("Prometheus did not scrape the target 5 times in 30 s:\n" + (tmp_path / "prometheus.log").read_text()[-3000:])
            time.sleep(0.5)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        log.close()
        httpd.shutdown()


def dashboard_queries():
    d = json.loads(DASHBOARD.read_text())
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    for a in d["annotations"]["list"]:
        if "expr" in a:
            out.append(("annotation " + a["name"], a["expr"]))
    return d, out


def grafana_to_promql(expr):
    # what Grafana substitutes before asking Prometheus: "All" models, a rate window of
    # four scrape intervals at least
    return expr.replace("$model", ".+").replace("$__rate_interval", "1m")


def test_dashboard_queries_and_rules_against_real_prometheus(prometheus):
    port = prometheus
    up = api(port, "/api/v1/query", query='up{job="slipway"}')
    assert up["data"]["result"][0]["value"][1] == "1"

    rules = api(port, "/api/v1/rules")
    assert rules["status"] == "success"
    loaded = [r for g in rules["data"]["groups"] for r in g["rules"]]
    assert len(loaded) == 7
    assert all(r["health"] == "ok" for r in loaded), [(r["name"], r.get("lastError")) for r in loaded]

    # the target's version 2 dropped 0.05 against an allowance of 0.02: the regression
    # alert fires (no `for`), with the series' labels; version 1 does not
    deadline = time.time() + 15
    while True:
        alerts = api(port, "/api/v1/alerts")["data"]["alerts"]
        firing = [a for a in alerts if a["labels"]["alertname"] == "SlipwayQualityRegression" and a["state"] == "firing"]
        if firing or time.time() > deadline:
            break
        time.sleep(0.5)
    assert len(firing) == 1, alerts
    assert firing[0]["labels"]["version"] == "2"
    assert firing[0]["labels"]["severity"] == "page"
    assert firing[0]["annotations"]["summary"] == "fmnist:2 accuracy dropped 0.0500 from its promotion baseline"
    # the drift alert waits out its 10 minutes: pending, with the worst feature named
    drift = [a for a in alerts if a["labels"]["alertname"] == "SlipwayDataDrift"]
    assert drift and drift[0]["state"] == "pending"
    assert drift[0]["annotations"]["description"].startswith("Worst features by PSI: image (2.970)")

    d, queries = dashboard_queries()
    assert len(queries) >= 20
    for title, expr in queries:
        promql = grafana_to_promql(expr)
        assert "$" not in promql, (title, promql)
        r = api(port, "/api/v1/query", query=promql)
        assert r["status"] == "success", (title, promql, r.get("error"))
        assert r["data"]["result"], f"panel '{title}': no data for {promql}"
        # and as Grafana asks for a graph: a range query
        now = time.time()
        r = api(port, "/api/v1/query_range", query=promql, start=now - 30, end=now, step=1)
        assert r["status"] == "success", (title, promql, r.get("error"))

    # the model variable's query
    var = [v for v in d["templating"]["list"] if v["name"] == "model"][0]
    assert var["definition"] == "label_values(slipway_model_loaded, model)"
    r = api(port, "/api/v1/label/model/values", **{"match[]": "slipway_model_loaded"})
    assert r["status"] == "success" and r["data"] == ["fmnist"]

    # the check above could fail: Prometheus refuses a broken query
    r = api(port, "/api/v1/query", query="sum by (model (slipway_ready)")
    assert r["status"] == "error"
