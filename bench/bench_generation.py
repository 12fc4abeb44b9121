"""The generation path as deployed since every generation is a job (docs/jobs.md), against the
openai SDK, LiteLLM and the floor.

Deployed, a generation is two functions: the **request path** (``generation.handler``: validate,
admit, record the job in DynamoDB, start its Step Functions execution, wait, answer) and the
**provider path** (``job_tasks.run``, the job's run step: claim the job, call the provider,
store the image in S3, record the result). Each has its own cold start; the provider path is
the one that calls the provider and makes the image, so it is the one set against the openai
SDK, LiteLLM and the floor. Every process asks the same local OpenAI-shaped server for the same
~1.5 MB PNG, and S3, DynamoDB and Step Functions are moto's server, over real HTTP.

- **cold**: a fresh process until its first answer, in the deployed shape (``shapes.py``):
  the request path answering ``POST /image/generate`` with ``Prefer: respond-async`` (202:
  the job recorded and its execution started); the run step running that job (data-URL mode:
  the image's base64 kept under ``jobs/``), its provider key from the secrets extension; the
  contenders; the floor; and bare boto3 doing the request path's AWS calls (its floor).
- **cold with SnapStart, emulated**: the same two first answers from a restored environment.
  One process does what Lambda's init does before a snapshot — imports the handler module,
  then ``snapstart.before_snapshot()`` — and each sample is a ``fork()`` of it, timed by the
  child from just after the fork to its first answer (``snapstart.after_restore()``, then the
  same handler call). The run step's key comes from Secrets Manager (moto's), as under
  SnapStart. A fork shares the parent's memory at once; Lambda's restore has to bring the
  snapshot's memory in first (its Restore Duration, not measurable here): the row is our part
  of a SnapStart cold start, not all of it.
- **warm**: per-request wall time in one process after warm-up. The provider call as the run
  step makes it, against the floor; the run step alone; the request path alone; and the whole
  generation — the handler with a job runner that runs the run step inline, so one request
  does every piece of work a deployed generation does but the Step Functions hop — on direct
  invoke and over HTTP, data-URL and stored (S3) modes, against the job floor (the floor plus
  the same AWS operations of the same shapes made with bare boto3, on our own tables under
  a customer and job ids of its own, so moto's cost is the same for both at every moment).
- **memory**: the peak of Python allocations during one warm request (``tracemalloc``), per byte
  of image, for each function on its own: the run step's, and the request path's (the inline
  run step's own peak excluded: in AWS it is another function).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from bench.servers import BenchProvider, SecretsExtension, noise_png
from bench.shapes import (
    ROOT,
    Snapshot,
    child_env,
    contender,
    deployed_assets,
    first_answer,
    lambda_layout,
    run_json,
)

KEY = "sk-bench-0123456789abcdef"
PROMPT = "A serene mountain landscape at sunset"
MODEL = "gpt-image-2"
CUSTOMER = 1
BUCKET = "bench-images"
JOBS_TABLE = "bench-jobs"
USAGE_TABLE = "bench-usage"
FLOOR_TABLE = "bench-floor"  # the cold request floor's: a bare pk table
# The job floor writes into our own tables, under a customer no request of ours uses (and job
# ids of its own): our code reads only items it wrote, by key, so the floor's items never
# change what ours does, and both sides pay moto's per-table costs on the same tables.
FLOOR_CUSTOMER = 990014
CATALOG_DATE = "2026-11-30"
SECRET_NAME = "bench-openai-api-key"  # created in moto's Secrets Manager: its ARN is real
ROLE_ARN = "arn:aws:iam::123456789012:role/bench-jobs"
OVERLAY_PARAMETER = "/bench/catalog-overlay"

CONTEXT = """
class Context:
    function_name, memory_limit_in_mb, aws_request_id = "generation", 1024, "bench-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:generation"
"""
# The request path, cold: POST /image/generate, Prefer: respond-async → 202 (job started).
REQUEST = (
    CONTEXT
    + """
import json, os
import generation
answer = generation.handler(json.loads(os.environ["BENCH_EVENT"]), Context())
assert answer["statusCode"] == 202, str(answer)[:300]
print("ok", json.loads(answer["body"])["data"]["job_id"], flush=True)
"""
)
# The run step's marks (``since()`` is the row's clock): the first AWS call answered, the
# provider request sent, the provider answered.
RUN_MARKS = """
import botocore.endpoint, httpx
_send, _http_send = botocore.endpoint.Endpoint._send, httpx.Client.send
def _aws_send(self, request):
    try:
        return _send(self, request)
    finally:
        marks.setdefault("first AWS call", since())
def _provider_send(self, request, **kwargs):
    if not request.url.path.endswith("/images/generations"):
        return _http_send(self, request, **kwargs)
    marks.setdefault("provider request sent", since())
    try:
        return _http_send(self, request, **kwargs)
    finally:
        marks.setdefault("provider answered", since())  # its headers: the body streams next
botocore.endpoint.Endpoint._send, httpx.Client.send = _aws_send, _provider_send
"""
# The provider path, cold: the job's run step (what Step Functions invokes).
RUN = (
    CONTEXT
    + """
import json, os
import job_tasks
# Marks, in ms since the bench started the process: imports done, the first AWS call answered
# (botocore, its session and a client made), the provider request sent, the answer.
since = lambda: (time.time() - float(os.environ["BENCH_T0"])) * 1000
marks = {"imports": since()}
"""
    + RUN_MARKS
    + """
state = job_tasks.run(json.loads(os.environ["BENCH_STATE"]), Context())
assert state["status"] == "Succeeded", state
marks["answer"] = since()
print("ok", json.dumps(marks), flush=True)
"""
)
# SnapStart, emulated. The init Lambda snapshots (the handler module imported, then the
# before-snapshot hook: clients made, no network I/O), then one fork per sample, standing for a
# restored environment: the child times itself from just after the fork to its first answer
# (the after-restore hook, then the handler call of the cold rows above, on the JSON line it is
# given), prints it and exits. The driver writes one line per sample (``Snapshot``).
SNAPSHOT_INIT = """
import json, os, sys, traceback
from image_service import snapstart
snapstart.before_snapshot()
"""
SNAPSHOT_LOOP = """
print("ready", flush=True)
for line in iter(sys.stdin.readline, ""):
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:  # a restored environment
        started = time.perf_counter()
        try:
            snapstart.after_restore()
            answer = first_answer(json.loads(line))
            print("ok", (time.perf_counter() - started) * 1000, answer, flush=True)
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
    if os.waitpid(child, 0)[1] != 0:
        print("failed", flush=True)
"""
SNAPSHOT_REQUEST = (
    CONTEXT
    + "import generation\n"
    + SNAPSHOT_INIT
    + """
def first_answer(event):
    answer = generation.handler(event, Context())
    assert answer["statusCode"] == 202, str(answer)[:300]
    return json.loads(answer["body"])["data"]["job_id"]
"""
    + SNAPSHOT_LOOP
)
SNAPSHOT_RUN = (
    CONTEXT
    + "import job_tasks\n"
    + SNAPSHOT_INIT
    + """
since = lambda: (time.perf_counter() - started) * 1000  # ms since the fork (the child's clock)
marks = {}
"""
    + RUN_MARKS
    + """
def first_answer(state):
    state = job_tasks.run(state, Context())
    assert state["status"] == "Succeeded", state
    marks["answer"] = since()
    return json.dumps(marks)
"""
    + SNAPSHOT_LOOP
)
OPENAI = """
import base64, os
from openai import OpenAI
client = OpenAI(api_key=os.environ["BENCH_KEY"], base_url=os.environ["BENCH_BASE_URL"])
answer = client.images.generate(model="gpt-image-2", prompt=os.environ["BENCH_PROMPT"],
                                size="1024x1024", quality="high")
print("ok", len(base64.b64decode(answer.data[0].b64_json)), flush=True)
"""
LITELLM = """
import base64, os
import litellm
answer = litellm.image_generation(model="openai/gpt-image-2", prompt=os.environ["BENCH_PROMPT"],
                                  api_key=os.environ["BENCH_KEY"],
                                  api_base=os.environ["BENCH_BASE_URL"],
                                  size="1024x1024", quality="high")
print("ok", len(base64.b64decode(answer.data[0].b64_json)), flush=True)
"""
FLOOR = """
import base64, json, os
import httpx
response = httpx.post(os.environ["BENCH_BASE_URL"] + "/images/generations",
                      json={"model": "gpt-image-2", "prompt": os.environ["BENCH_PROMPT"],
                            "size": "1024x1024", "quality": "high", "n": 1},
                      headers={"authorization": "Bearer " + os.environ["BENCH_KEY"]}, timeout=30)
print("ok", len(base64.b64decode(response.json()["data"][0]["b64_json"])), flush=True)
"""
# The request path's AWS work with nothing else: bare boto3, the same three calls (count the
# request, record the job, start its execution), one client per service.
AWS_FLOOR_SETUP = """
import json, os, uuid
import boto3
dynamodb, sfn = boto3.client("dynamodb"), boto3.client("stepfunctions")
TABLE, MACHINE = os.environ["BENCH_FLOOR_TABLE"], os.environ["JOB_STATE_MACHINE_ARN"]
def start_job():
    job_id = uuid.uuid4().hex
    dynamodb.update_item(TableName=TABLE, Key={"pk": {"S": "usage#1"}},
                         UpdateExpression="ADD requests :one",
                         ExpressionAttributeValues={":one": {"N": "1"}})
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "job#" + job_id},
                                             "record": {"S": "x" * 1500}},
                      ConditionExpression="attribute_not_exists(pk)")
    sfn.start_execution(stateMachineArn=MACHINE, name=job_id,
                        input=json.dumps({"job_id": job_id, "customer_id": 1}))
    return job_id
"""
REQUEST_FLOOR = (
    AWS_FLOOR_SETUP
    + """
print("ok", start_job(), flush=True)
"""
)

# One process: warm-up, then timed requests, then one traced request per measurement.
WARM_SETUP = """
import gc, json, os, statistics, time, tracemalloc
RUNS = int(os.environ["BENCH_RUNS"])
traced = {}
def measure(call, before=lambda: None, **extra):
    for _ in range(3):
        before()
        call()
    times = []
    for _ in range(RUNS):
        before()
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    before()
    gc.collect()
    tracemalloc.start()
    base = traced["base"] = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    kept = call()  # the answer is part of the request's memory
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del kept
    return {"times": times, "peak_bytes": peak, **extra}

# Alternating requests, ours and the floor's, order swapped every round: each pair ran under
# the same load. Returns both series and the ratio of each pair.
def paired(ours, floor, before=lambda: None):
    for _ in range(3):
        before(); ours(); floor()
    mine, theirs = [], []
    for i in range(RUNS):
        for which, call in ((mine, ours), (theirs, floor))[:: 1 if i % 2 else -1]:
            if call is ours:
                before()
            started = time.perf_counter()
            call()
            which.append((time.perf_counter() - started) * 1000)
    return {"times": mine, "floor_times": theirs,
            "ratios": [a / b for a, b in zip(mine, theirs)]}
"""
GENERATION_WARM = (
    WARM_SETUP
    + CONTEXT
    + """
import botocore.endpoint, botocore.session
aws_calls = []  # every AWS API call the function makes, by name, whichever session made it
# Each call's time as its caller sees it (before-call → after-call: serialise, sign, send, wait,
# read, parse) and the part of it on the wire (the HTTP round trip, body read but not parsed;
# a GetObject's body is read by its caller, after the call). One thread: the runs here store
# one image, so no upload runs in a pool.
aws_timings = []  # (operation, call ms, wire ms)
_clock = {}
_send = botocore.endpoint.Endpoint._send
def _timed_send(self, request):
    started = time.perf_counter()
    try:
        return _send(self, request)
    finally:
        _clock["wire"] = _clock.get("wire", 0.0) + time.perf_counter() - started
botocore.endpoint.Endpoint._send = _timed_send
def _before_call(model, **kw):
    aws_calls.append(model.name)
    _clock["call"], _clock["wire"] = time.perf_counter(), 0.0
def _after_call(model, **kw):
    ms = (time.perf_counter() - _clock["call"]) * 1000
    aws_timings.append((model.name, ms, _clock["wire"] * 1000))
_create_client = botocore.session.Session.create_client
def _counting_client(self, *args, **kwargs):
    client = _create_client(self, *args, **kwargs)
    client.meta.events.register("before-call", _before_call)
    client.meta.events.register("after-call", _after_call)
    return client
botocore.session.Session.create_client = _counting_client

def per_operation(ours, floor, rounds):
    # Ours and the floor, alternating: each AWS operation's call and wire time, by position
    # (both make the same operations in the same order), and each request's total.
    sides = {"ours": (ours, []), "floor": (floor, [])}
    for i in range(rounds):
        for name in (("ours", "floor") if i % 2 else ("floor", "ours")):
            call, samples = sides[name]
            aws_timings.clear()
            started = time.perf_counter()
            call()
            total = (time.perf_counter() - started) * 1000
            samples.append((total, list(aws_timings)))
    out = {}
    for name, (_, samples) in sides.items():
        operations = [op for op, _, _ in samples[0][1]]
        out[name] = {
            "total": statistics.median(t for t, _ in samples),
            "operations": [
                {"operation": op,
                 "call": statistics.median(s[1][i][1] for s in samples),
                 "wire": statistics.median(s[1][i][2] for s in samples)}
                for i, op in enumerate(operations)
            ],
        }
    return out

import generation, job_tasks
from image_service.models import parse_request
from image_service.pipeline import call_provider
from image_service.providers import get_image_provider
from image_service.service import Caller

events = json.loads(os.environ["BENCH_EVENTS"])
results = {}

# --- the floors, in this process: bare httpx for the provider, bare boto3 for AWS -------------
import base64, uuid
import boto3, httpx
floor_http = httpx.Client(timeout=30)
floor_url = os.environ["BENCH_BASE_URL"] + "/images/generations"
floor_body = {"model": "gpt-image-2", "prompt": os.environ["BENCH_PROMPT"], "size": "1024x1024",
              "quality": "high", "n": 1}
floor_headers = {"authorization": "Bearer " + os.environ["BENCH_KEY"]}
def floor():
    response = floor_http.post(floor_url, json=floor_body, headers=floor_headers)
    return base64.b64decode(response.json()["data"][0]["b64_json"])
floor_session = boto3.Session()  # its own session and clients: nothing shared with ours
ddb, s3 = floor_session.client("dynamodb"), floor_session.client("s3")
BUCKET = os.environ["IMAGE_BUCKET"]
# Our own tables, under a customer of the floor's own and job ids of its own: moto copies a
# whole table for every item of a transaction, so its cost grows with the table's content; on
# the same tables both sides pay the same at every moment. Our code reads only its own items,
# by key: the floor's never change what ours does.
JOBS, USAGE = os.environ["JOBS_TABLE"], os.environ["USAGE_TABLE"]
FLOOR_CUSTOMER = os.environ["BENCH_FLOOR_CUSTOMER"]
FLOOR_PK = {"S": "customer#" + FLOOR_CUSTOMER}
RECORD = {"S": "x" * 2000}  # about a job record's size
N = lambda value: {"N": str(value)}
def windows(expression, values, condition=None):
    return [{"Update": {"TableName": USAGE, "Key": {"pk": FLOOR_PK, "sk": {"S": sk}},
                        "UpdateExpression": expression, "ExpressionAttributeValues": values}
             | ({"ConditionExpression": condition} if condition else {})}
            for sk in ("day#2026-11-30", "month#2026-11")]
# The whole generation's AWS calls, the same operations of the same shape in the same order
# (usage limits read; request counted; day and month reserved with the charge, one
# transaction; job created; job read, claimed; image kept; result recorded; charge settled with
# day and month, one transaction; record read; image read back), made with bare boto3 around
# the floor's call. Every write conditional where ours is.
def job_floor():
    job_id, charge = uuid.uuid4().hex, {"pk": FLOOR_PK, "sk": {"S": "charge#" + uuid.uuid4().hex}}
    job = {"pk": {"S": "job#" + job_id}}
    record = lambda version: dict(
        TableName=JOBS, Key=job, UpdateExpression="SET #r = :r, #v = :next, #s = :s",
        ConditionExpression="#v = :read",
        ExpressionAttributeNames={"#r": "record", "#v": "version", "#s": "status"},
        ExpressionAttributeValues={":r": RECORD, ":next": N(version + 1), ":read": N(version),
                                   ":s": {"S": "running"}})
    ddb.get_item(TableName=USAGE, Key={"pk": FLOOR_PK, "sk": {"S": "limits"}})
    ddb.update_item(TableName=USAGE, Key={"pk": FLOOR_PK, "sk": {"S": "minute#x"}},
                    UpdateExpression="ADD requests :one SET expires_at = if_not_exists(expires_at, :t)",
                    ConditionExpression="attribute_not_exists(requests) OR requests < :limit",
                    ExpressionAttributeValues={":one": N(1), ":limit": N(10**9), ":t": N(1)})
    ddb.transact_write_items(TransactItems=[
        *windows("ADD committed_usd :e, reserved_usd :e, charges :one "
                 "SET expires_at = if_not_exists(expires_at, :t)",
                 {":e": N(0.2), ":one": N(1), ":t": N(1), ":max": N(10**9)},
                 "attribute_not_exists(committed_usd) OR committed_usd <= :max"),
        {"Put": {"TableName": USAGE, "Item": charge | {"status": {"S": "reserved"}},
                 "ConditionExpression": "attribute_not_exists(sk)"}}])
    ddb.transact_write_items(TransactItems=[{"Put": {
        "TableName": JOBS, "ConditionExpression": "attribute_not_exists(pk)",
        "Item": job | {"record": RECORD, "version": N(1), "status": {"S": "queued"},
                       "customer": {"S": FLOOR_CUSTOMER}, "created": {"S": job_id}}}}])
    ddb.get_item(TableName=JOBS, Key=job)
    ddb.update_item(**record(1))
    text = floor_http.post(floor_url, json=floor_body, headers=floor_headers).json()["data"][0]["b64_json"]
    s3.put_object(Bucket=BUCKET, Key="jobs/floor/" + job_id, Body=text.encode())
    del text
    ddb.update_item(**record(2))
    ddb.transact_write_items(TransactItems=[
        {"Update": {"TableName": USAGE, "Key": charge, "ConditionExpression": "#s = :reserved",
                    "UpdateExpression": "SET #s = :settled, cost_usd = :c",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":reserved": {"S": "reserved"},
                                                  ":settled": {"S": "settled"}, ":c": N(0.2)}}},
        *windows("ADD committed_usd :d, reserved_usd :r, spent_usd :c",
                 {":d": N(0), ":r": N(-0.2), ":c": N(0.2)})])
    ddb.get_item(TableName=JOBS, Key=job)
    stored = s3.get_object(Bucket=BUCKET, Key="jobs/floor/" + job_id)["Body"].read()
    return "data:image/png;base64," + stored.decode()
# moto copies a whole table for every item of a transaction, so its time per transaction grows
# with all that both sides wrote so far: after a few thousand items one can outlast a client's
# read timeout, the client sends it again, and moto (not thread-safe there) fails both. Each
# comparison starts from empty tables, outside any timing: both sides pay moto alike, and little
# (in DynamoDB a transaction's cost does not grow with the table either).
def empty_tables():
    for table in (JOBS, USAGE):
        names = [k["AttributeName"] for k in ddb.describe_table(TableName=table)["Table"]["KeySchema"]]
        pages = ddb.get_paginator("scan").paginate(
            TableName=table, ProjectionExpression=", ".join(f"#{i}" for i in range(len(names))),
            ExpressionAttributeNames={f"#{i}": name for i, name in enumerate(names)})
        keys = [item for page in pages for item in page["Items"]]
        for start in range(0, len(keys), 25):
            ddb.batch_write_item(RequestItems={table: [
                {"DeleteRequest": {"Key": key}} for key in keys[start:start + 25]]})
results["floor"] = measure(floor)
empty_tables()
results["job floor"] = measure(job_floor)

def counted(call):
    aws_calls.clear()
    call()
    return list(aws_calls)

# --- the request path alone (deployed runner: Step Functions) ------------------------------
def start(event):
    answer = generation.handler(event, Context())
    assert answer["statusCode"] == 202, str(answer)[:300]
    return json.loads(answer["body"])["data"]["job_id"]
request = events["request"]
empty_tables()
results["request path (HTTP, respond-async)"] = measure(lambda: start(request))
results["request path (HTTP, respond-async)"]["aws_calls"] = counted(lambda: start(request))

# --- the run step alone, on jobs the request path started ----------------------------------
for name, event in (("run step, data URL", events["request"]),
                    ("run step, stored (S3)", events["request, stored"])):
    pending = []
    def next_job(event=event):
        pending.append(start(event))
    def run():
        state = {"job_id": pending.pop(), "customer_id": 1, "interval_seconds": 1}
        state = job_tasks.run(state, Context())
        assert state["status"] == "Succeeded", state
        return state
    empty_tables()
    calls = (next_job(), counted(run))[1]
    results[name] = measure(run, before=next_job, aws_calls=calls)

# --- the provider call as the run step makes it --------------------------------------------
prepared = generation.image_service().prepare(
    parse_request(events["direct, data URL"]), timeout_seconds=30)
provider = get_image_provider("openai")
def provider_call():
    return call_provider(provider, prepared.provider_request)
results["provider call (the run step's)"] = measure(provider_call) | {
    "paired": paired(provider_call, floor)}

# --- the whole generation: the handler, its job's run step inline --------------------------
run_peaks = {}
class InlineRun:
    \"\"\"Runs the job's run step inside start, as Step Functions would run it beside the
    request; under tracemalloc it keeps the run step's own peak apart from the handler's.\"\"\"
    def start(self, execution_input):
        tracing = tracemalloc.is_tracing()
        if tracing:
            run_peaks["before"] = tracemalloc.get_traced_memory()[1]
            at_start = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
        state = job_tasks.run(dict(execution_input), Context())
        assert state["status"] == "Succeeded", state
        if tracing:
            run_peaks["run"] = tracemalloc.get_traced_memory()[1] - at_start
            tracemalloc.reset_peak()
generation.job_runner = InlineRun()
generation.image_service.cache_clear()
for name in ("direct, data URL", "HTTP, data URL", "direct, stored (S3)", "HTTP, stored (S3)"):
    event = events[name]
    def call(event=event):
        answer = generation.handler(event, Context())
        assert answer.get("success") or answer.get("statusCode") == 200, str(answer)[:300]
        return answer
    empty_tables()
    calls = counted(call)
    result = measure(call, aws_calls=calls)
    empty_tables()
    result["paired"] = paired(call, job_floor)
    if name == "direct, data URL":
        empty_tables()
        results["per operation"] = per_operation(call, job_floor, max(RUNS // 2, 3))
    # The handler's peak: before its job ran, or after (its own answer); not the run step's.
    result["peak_bytes"] = max(result["peak_bytes"], run_peaks["before"] - traced["base"])
    result["run_peak_bytes"] = run_peaks["run"]
    results[name] = result
print(json.dumps(results))
"""
)


def direct_event(save_to_db: bool) -> dict:
    return {"prompt": PROMPT, "customer_id": CUSTOMER, "save_to_db": save_to_db,
            "settings": {"image": {"model": MODEL, "width": 1024, "height": 1024,
                                   "quality": "high"}}}  # fmt: skip


def http_event(save_to_db: bool, *, respond_async: bool = False) -> dict:
    """``POST /image/generate`` as API Gateway (HTTP API, payload 2.0) hands it over."""
    headers = {"content-type": "application/json", "authorization": "Bearer x.y.z"}
    if respond_async:
        headers["prefer"] = "respond-async"
    return {
        "version": "2.0",
        "routeKey": "POST /image/generate",
        "rawPath": "/image/generate",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "http": {"method": "POST", "path": "/image/generate", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.9", "userAgent": "bench"},
            "requestId": "bench-1",
            "routeKey": "POST /image/generate",
            "stage": "$default",
            "authorizer": {"lambda": {"customer_id": str(CUSTOMER), "sub": "bench",
                                      "scopes": ""}},
        },
        "body": json.dumps(direct_event(save_to_db)),
        "isBase64Encoded": False,
    }  # fmt: skip


def _aws_server() -> tuple[str, str, str, object]:
    """moto's server (S3, DynamoDB, Step Functions, SSM, Secrets Manager) with the bucket, the
    jobs and usage tables (their schemas from the code), a bare table for the cold request
    floor, a job state machine and the provider key's secret. Returns the endpoint, the state
    machine's ARN, the secret's ARN and the server."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    sys.path[:0] = [
        str(ROOT / "functions" / "generation"),
        str(ROOT / "layers" / "common" / "python"),
    ]
    from image_service import job_store, usage

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench",
                            region_name="us-east-1")  # fmt: skip
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    job_store.create_table(dynamodb, JOBS_TABLE)
    usage.create_table(dynamodb, USAGE_TABLE)
    dynamodb.create_table(TableName=FLOOR_TABLE, BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])  # fmt: skip
    # The catalog overlay as deployed: an SSM parameter every function reads (here: no change).
    session.client("ssm", endpoint_url=endpoint).put_parameter(
        Name=OVERLAY_PARAMETER, Value="{}", Type="String"
    )
    machine = session.client("stepfunctions", endpoint_url=endpoint).create_state_machine(
        name="bench-jobs",
        definition=json.dumps({"StartAt": "Run", "States": {"Run": {"Type": "Pass", "End": True}}}),
        roleArn=ROLE_ARN,
    )["stateMachineArn"]
    # The provider key as deployed: its own secret (the extension serves it to the cold and warm
    # rows; under SnapStart the run step reads it with GetSecretValue).
    secret = session.client("secretsmanager", endpoint_url=endpoint).create_secret(
        Name=SECRET_NAME, SecretString=json.dumps({"api_key": KEY})
    )["ARN"]
    return endpoint, machine, secret, server


def run(cold_runs: int, warm_runs: int) -> dict:
    image = noise_png()
    provider = BenchProvider(image)
    provider_server = provider.serve()
    extension = SecretsExtension(json.dumps({"api_key": KEY}))
    aws_endpoint, machine, secret_arn, aws_server = _aws_server()
    base_url = f"{provider.base_url}/v1"
    common = {"BENCH_KEY": KEY, "BENCH_BASE_URL": base_url, "BENCH_PROMPT": PROMPT,
              "BENCH_RUNS": str(warm_runs)}  # fmt: skip
    aws = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": aws_endpoint,  # boto3's own: every service at moto's server
        "IMAGE_BUCKET": BUCKET,
        "JOB_STATE_MACHINE_ARN": machine,
        "BENCH_FLOOR_TABLE": FLOOR_TABLE,
        "BENCH_FLOOR_CUSTOMER": str(FLOOR_CUSTOMER),
    }
    function_env = {
        **aws,
        "JOBS_TABLE": JOBS_TABLE,
        "USAGE_TABLE": USAGE_TABLE,  # limits checked as deployed, set out of the bench's way
        "RATE_LIMIT_PER_MINUTE": "100000",
        "DAILY_BUDGET_USD": "1000000",
        "MONTHLY_BUDGET_USD": "1000000",
        "CATALOG_DATE": CATALOG_DATE,
        "CATALOG_OVERLAY_PARAMETER": OVERLAY_PARAMETER,
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY_SECRET_ARN": secret_arn,
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(extension.port),
        "AWS_SESSION_TOKEN": "bench-session",
        "AWS_LAMBDA_FUNCTION_NAME": "generation",
        "POWERTOOLS_SERVICE_NAME": "image-generation",
        "POWERTOOLS_METRICS_NAMESPACE": "ImageService",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **common,
    }
    snapshots: dict[str, Snapshot] = {}
    try:
        assets = deployed_assets()
        function_path = [*lambda_layout(assets, "generation"), contender("lambda-runtime")]
        contenders = {name: [contender(name)] for name in ("openai", "litellm", "floor")}
        boto3_only = [contender("lambda-runtime")]
        programs = {"request path": (REQUEST, function_path), "run step": (RUN, function_path),
                    "openai": (OPENAI, contenders["openai"]),
                    "litellm": (LITELLM, contenders["litellm"]),
                    "floor": (FLOOR, contenders["floor"]),
                    "request floor": (REQUEST_FLOOR, boto3_only)}  # fmt: skip
        # Under SnapStart Lambda sets no AWS_SESSION_TOKEN (the secrets extension cannot
        # serve): the before-snapshot hook reads provider keys with GetSecretValue instead.
        snapstart_env = child_env(function_path, **{
            name: value for name, value in function_env.items()
            if name not in ("AWS_SESSION_TOKEN", "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT")})  # fmt: skip
        snapshots["request path, SnapStart"] = Snapshot(SNAPSHOT_REQUEST, snapstart_env)
        snapshots["run step, SnapStart"] = Snapshot(SNAPSHOT_RUN, snapstart_env)
        cold: dict[str, list] = {name: [] for name in [*programs, *snapshots]}
        run_marks: list[dict[str, float]] = []
        snapstart_marks: list[dict[str, float]] = []
        event = json.dumps(http_event(save_to_db=False, respond_async=True))
        for _ in range(cold_runs + 1):  # the first round warms the OS file cache: dropped
            job_id = ""
            for name, (code, path) in programs.items():
                own = function_env if path is function_path else common
                if name == "request floor":
                    own = {**aws, **common}
                state = json.dumps({"job_id": job_id, "customer_id": CUSTOMER,
                                    "interval_seconds": 1})  # fmt: skip
                env = child_env(path, **own, BENCH_EVENT=event, BENCH_STATE=state,
                                LITELLM_LOCAL_MODEL_COST_MAP="True")  # fmt: skip
                env["BENCH_T0"] = repr(time.time())  # the run step's marks count from here
                elapsed, line = first_answer(code, env)
                if name == "request path":
                    job_id = line.split()[1]  # the job the run step runs next
                if name == "run step":
                    run_marks.append(json.loads(line.split(maxsplit=1)[1]))
                cold[name].append(elapsed)
            # A restored environment per sample, on a job of its own (the request's).
            elapsed, job_id = snapshots["request path, SnapStart"].restore(event)
            cold["request path, SnapStart"].append(elapsed)
            state = json.dumps({"job_id": job_id, "customer_id": CUSTOMER, "interval_seconds": 1})
            elapsed, marks = snapshots["run step, SnapStart"].restore(state)
            cold["run step, SnapStart"].append(elapsed)
            snapstart_marks.append(json.loads(marks))
        for snapshot in snapshots.values():
            snapshot.close()
        cold = {name: times[1:] for name, times in cold.items()}
        cold["run step marks"] = run_marks[1:]
        cold["run step, SnapStart, marks"] = snapstart_marks[1:]

        events = {
            "request": http_event(False, respond_async=True),
            "request, stored": http_event(True, respond_async=True),
            "direct, data URL": direct_event(False),
            "HTTP, data URL": http_event(False),
            "direct, stored (S3)": direct_event(True),
            "HTTP, stored (S3)": http_event(True),
        }
        warm = json.loads(
            run_json(
                GENERATION_WARM,
                child_env(function_path, **function_env, BENCH_EVENTS=json.dumps(events)),
            )  # fmt: skip
        )
    finally:
        for snapshot in snapshots.values():
            snapshot.close()
        extension.close()
        provider_server.shutdown()
        provider_server.server_close()
        aws_server.stop()
    return {"image_bytes": len(image), "cold": cold, "warm": warm, "assets": assets}


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    return f"{min(values):.0f}–{max(values):.0f}"


def artifact_sizes(assets) -> dict[str, int]:
    """Zipped (deflate) size of each function's code plus its layers, as Lambda receives them."""
    import io
    import zipfile

    def zipped(folder: Path) -> int:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder).as_posix())
        return buffer.tell()

    common = zipped(assets.common_layer)
    return {
        "generation": zipped(assets.generation_code)
        + zipped(assets.dependency_layers["generation"])
        + common,
        "authorizer": zipped(assets.authorizer_code)
        + zipped(assets.dependency_layers["authorizer"])
        + common,
    }
