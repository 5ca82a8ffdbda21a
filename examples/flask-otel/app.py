"""A small Flask shop whose metrics carry exemplars into Amber.

Run it auto-instrumented (see README.md):

    opentelemetry-instrument flask --app app run

`/checkout` answers with the trace id of its request, so you (and the test) can look the trace up
in Amber: GET /api/v1/exemplars/trace/<trace_id>.

`/metrics` serves the same request latency for Prometheus to scrape, in OpenMetrics (negotiated by
the scraper's Accept header) with the trace and span id of a request as each bucket's exemplar:
the path through Prometheus's remote write instead of OTLP.
"""

import random
import time

import prometheus_client
from flask import Flask, jsonify
from opentelemetry import metrics, trace
from werkzeug.middleware.dispatcher import DispatcherMiddleware

app = Flask(__name__)
app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/metrics": prometheus_client.make_wsgi_app()})
tracer = trace.get_tracer("shop")
meter = metrics.get_meter("shop")
# A business histogram. Recorded inside a sampled span, so its exemplars link to that span.
basket_value = meter.create_histogram(
    "shop.basket.value", unit="EUR", description="Value of the baskets checked out"
)


# The Prometheus client's histogram of the same requests, exposed on /metrics.
checkout_seconds = prometheus_client.Histogram(
    "shop_checkout_duration_seconds", "Time to handle a checkout", ["route"]
)


@app.route("/checkout")
def checkout():
    started = time.perf_counter()
    with tracer.start_as_current_span("price basket"):
        time.sleep(random.uniform(0.001, 0.02))
        basket_value.record(random.uniform(5, 250), {"shop.channel": "web"})
    context = trace.get_current_span().get_span_context()
    ids = {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}
    checkout_seconds.labels(route="/checkout").observe(time.perf_counter() - started, exemplar=ids)
    return jsonify(ids)
