"""The monitoring history: one line per run, and the predictor's counters turned into rates."""

from __future__ import annotations

from autokfp.monitoring.history import append_history, rates_since, read_history, scrape_counters

METRICS = """# HELP autokfp_requests_total Prediction requests
# TYPE autokfp_requests_total counter
autokfp_requests_total{model="churn",protocol="v1",version="2"} 900.0
autokfp_requests_total{model="churn",protocol="v2",version="2"} 100.0
autokfp_requests_total{model="other",protocol="v1",version="1"} 5.0
# HELP autokfp_request_errors_total Rejected or failed requests
# TYPE autokfp_request_errors_total counter
autokfp_request_errors_total{kind="invalid_input",model="churn",version="2"} 20.0
# HELP autokfp_predict_seconds Time to validate and score one request
# TYPE autokfp_predict_seconds histogram
autokfp_predict_seconds_bucket{le="+Inf",model="churn",version="2"} 980.0
autokfp_predict_seconds_count{model="churn",version="2"} 980.0
autokfp_predict_seconds_sum{model="churn",version="2"} 4.9
"""


def test_a_rerun_of_the_same_run_adds_no_second_line(autokfp_home):
    assert append_history(
        "churn", {"run_id": "r1", "timestamp": "2025-06-01T00:00:00Z", "rows": 10}, autokfp_home
    )
    assert not append_history(
        "churn", {"run_id": "r1", "timestamp": "2025-06-01T00:00:00Z", "rows": 11}, autokfp_home
    )
    assert append_history(
        "churn", {"run_id": "r2", "timestamp": "2025-06-01T06:00:00Z", "rows": 12}, autokfp_home
    )
    history = read_history("churn", autokfp_home)
    assert history["rows"].tolist() == [10, 12]


def test_counters_are_read_for_the_service_and_become_rates(tmp_path):
    page = tmp_path / "metrics.txt"
    page.write_text(METRICS)
    counters = scrape_counters(str(page), "churn")
    assert counters == {
        "requests": 1000.0,
        "errors": 20.0,
        "latency_sum": 4.9,
        "latency_count": 980.0,
    }
    previous = {
        "counter_requests": 500.0,
        "counter_errors": 10.0,
        "counter_latency_sum": 2.9,
        "counter_latency_count": 480.0,
    }
    rates = rates_since(previous, counters)
    assert rates["requests"] == 500.0 and rates["error_rate"] == 10 / 500
    assert round(rates["latency_mean_ms"], 6) == 4.0
    restarted = rates_since({"counter_requests": 5000.0}, counters)  # the predictor restarted
    assert restarted["requests"] == 1000.0
