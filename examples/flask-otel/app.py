"""A small Flask shop whose metrics carry exemplars into Amber.

Run it auto-instrumented (see README.md):

    opentelemetry-instrument flask --app app run

`/checkout` answers with the trace id of its request, so you (and the test) can look the trace up
in Amber: GET /api/v1/exemplars/trace/<trace_id>.
"""

import random
import time

from flask import Flask, jsonify
from opentelemetry import metrics, trace

app = Flask(__name__)
tracer = trace.get_tracer("shop")
meter = metrics.get_meter("shop")
# A business histogram. Recorded inside a sampled span, so its exemplars link to that span.
basket_value = meter.create_histogram(
    "shop.basket.value", unit="EUR", description="Value of the baskets checked out"
)


@app.route("/checkout")
def checkout():
    with tracer.start_as_current_span("price basket"):
        time.sleep(random.uniform(0.001, 0.02))
        basket_value.record(random.uniform(5, 250), {"shop.channel": "web"})
    context = trace.get_current_span().get_span_context()
    return jsonify(trace_id=format(context.trace_id, "032x"), span_id=format(context.span_id, "016x"))
