"""A client generated with openapi-python-client from the running API's /openapi.json
works as a client should: operations named after their route functions and grouped by tag,
each plugin's result a typed class, the plugin an open string, /metrics as text, the
server's caps documented; and it drives the real service (PostgreSQL and SQLite): create
a job and read its typed result, page through jobs by cursor, send a correction."""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import typing
from pathlib import Path
from types import ModuleType

import pytest
from service_helpers import png_bytes

from twinlens.api.result_schemas import schema_prefix

GENERATOR = str(Path(sys.executable).with_name("openapi-python-client"))
# The operations the tests below drive, as <tag>/<operationId> modules.
OPERATIONS = ["jobs/create_job", "jobs/get_job", "jobs/list_jobs", "jobs/add_feedback", "jobs/list_feedback",
              "models/list_models", "plugins/list_plugins", "plugins/get_plugin", "health/metrics"]


class Generated(typing.NamedTuple):
    root: Path  # the generated package's folder
    package: str
    plugins: list[str]  # the names GET /v1/plugins lists as working


@pytest.fixture(scope="module")
def generated(live, tmp_path_factory) -> typing.Iterator[Generated]:
    with live.client() as client:
        document = client.get("/openapi.json").json()
        plugins = [view["name"] for view in client.get("/v1/plugins").json()["data"] if not view["error"]]
    work = tmp_path_factory.mktemp(f"client-{live.backend}")
    (work / "openapi.json").write_text(json.dumps(document))
    package = f"twinlens_client_{live.backend}"  # one per backend: both are imported in one process
    # No post hooks: the generated code needs no formatter to run.
    # JSON Lines (a batch's results, application/x-ndjson) has no type the generator knows:
    # its client reads that answer as text. A heatmap PNG is read as bytes (a File).
    (work / "config.yaml").write_text(f"post_hooks: []\npackage_name_override: {package}\n"
                                      "content_type_overrides:\n  application/x-ndjson: text/plain\n"
                                      "  image/png: application/octet-stream\n")
    result = subprocess.run(
        [GENERATOR, "generate", "--path", str(work / "openapi.json"), "--output-path", str(work / package),
         "--config", str(work / "config.yaml"), "--meta", "none"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Unsupported" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(work))
    try:
        yield Generated(work / package, package, plugins)
    finally:
        sys.path.remove(str(work))
        for name in [name for name in sys.modules if name.split(".")[0] == package]:
            del sys.modules[name]


def _module(generated: Generated, name: str) -> ModuleType:
    return importlib.import_module(f"{generated.package}.{name}")


def _client(generated: Generated, live, key: str):
    return _module(generated, "client").AuthenticatedClient(base_url=live.url, token=key, raise_on_unexpected_status=True)


def test_operations_are_named_after_their_route_functions_and_grouped_by_tag(generated):
    api = generated.root / "api"
    for operation in OPERATIONS:
        assert (api / f"{operation}.py").is_file(), sorted(p.relative_to(api).as_posix() for p in api.rglob("*.py"))
    # FastAPI's default ids carry the path and method (create_job_v1_plugins_name_jobs_post).
    defaults = [p.name for p in api.rglob("*.py") if "_v1_" in p.name or p.stem.endswith(("_get", "_post", "_delete"))]
    assert defaults == []


def test_every_working_plugin_has_a_typed_result_and_inputs_class(generated):
    models = _module(generated, "models")
    assert "generic" in generated.plugins
    for plugin in generated.plugins:
        for suffix in ("Result", "Heads", "Inputs"):
            assert hasattr(models, f"{schema_prefix(plugin)}{suffix}"), (plugin, suffix)
    if "support_ticket" in generated.plugins:  # its declared tasks are typed attributes
        hints = typing.get_type_hints(models.SupportTicketHeads, localns=vars(models))
        assert hints["fault"] is hints["severity"] is models.HeadPrediction


def test_plugin_is_an_open_string_and_the_caps_are_documented(generated, live):
    create_job = _module(generated, "api.jobs.create_job")
    list_jobs = _module(generated, "api.jobs.list_jobs")
    assert typing.get_type_hints(create_job.sync_detailed)["name"] is str
    assert f"this server waits at most {live.settings.max_wait_seconds:g} s" in create_job.sync_detailed.__doc__
    assert f"at most {live.settings.page_size_limit} come back" in list_jobs.sync_detailed.__doc__
    with live.client() as client:
        description = client.get("/openapi.json").json()["paths"]["/v1/plugins/{name}/jobs"]["post"]["description"]
    assert f"{live.settings.max_upload_bytes} bytes and {live.settings.max_image_pixels} pixels" in description
    unknown = create_job.sync_detailed("no_such_plugin", client=_client(generated, live, live.admin_key),
                                       body=_module(generated, "models").JobCreate(inputs=_generic_inputs(generated, "x")))
    assert unknown.status_code == 404 and unknown.parsed.status == 404


def test_metrics_come_back_as_prometheus_text(generated, live):
    metrics = _module(generated, "api.health.metrics")
    text = metrics.sync(client=_client(generated, live, live.admin_key))
    assert isinstance(text, str)
    assert "# TYPE" in text and "twinlens_" in text


def _generic_inputs(generated: Generated, text: str):
    return _module(generated, "models").GenericInputs(text=text)


def test_a_job_created_through_the_client_has_a_typed_result(generated, live):
    models = _module(generated, "models")
    create_job, get_job = _module(generated, "api.jobs.create_job"), _module(generated, "api.jobs.get_job")
    list_models = _module(generated, "api.models.list_models")
    key = live.new_tenant_key()
    client = _client(generated, live, key)
    active = [m for m in list_models.sync(client=client, plugin="generic").data if m.is_active]

    response = create_job.sync_detailed("generic", client=client, wait=30,
                                        body=models.JobCreate(inputs=_generic_inputs(generated, "a small red square")))

    assert response.status_code == 200, response.content
    job = response.parsed
    assert isinstance(job, models.JobView) and job.status == models.JobViewStatus.SUCCEEDED
    assert isinstance(job.result, models.GenericResult)
    assert job.result.model_version.version == active[0].version == job.model_version.version
    head = job.result.heads["label"]
    assert isinstance(head, models.HeadPrediction) and head.kind == models.HeadPredictionKind.MULTICLASS
    probabilities = head.probabilities.additional_properties
    assert head.label in probabilities and abs(sum(probabilities.values()) - 1.0) < 1e-3
    assert head.label == max(probabilities, key=probabilities.get)
    decision = job.result.decision  # the plugin's declared decision_model(), typed
    assert isinstance(decision, models.GenericDecision) and isinstance(decision.needs_review, bool)
    assert decision.heads["label"]["label"] == head.label
    assert set(job.result.explanation.inputs_present) == {"text"}
    assert job.result.explanation.contributions.additional_properties.keys() == {"text"}
    again = get_job.sync(job.id, client=client)
    with live.client(key) as plain:
        raw = plain.get(f"/v1/jobs/{job.id}").json()
    assert again.result.heads["label"].label == raw["result"]["heads"]["label"]["label"] == head.label
    assert again.result.decision.needs_review == raw["result"]["decision"]["needs_review"]


def test_an_image_job_through_the_multipart_body(generated, live):
    models, types = _module(generated, "models"), _module(generated, "types")
    create_job = _module(generated, "api.jobs.create_job")
    client = _client(generated, live, live.new_tenant_key())
    image = types.File(payload=io.BytesIO(png_bytes(seed=77)), file_name="square.png", mime_type="image/png")

    job = create_job.sync("generic", client=client, wait=30, body=models.CreateJobFilesBody(image=image, text="red square"))

    assert isinstance(job.result, models.GenericResult), job
    assert set(job.result.explanation.inputs_present) == {"image", "text"}
    assert job.inputs.additional_properties["image"]["media_type"] == "image/png"


def test_listing_follows_the_cursor_page_by_page(generated, live):
    models, types = _module(generated, "models"), _module(generated, "types")
    create_job, list_jobs = _module(generated, "api.jobs.create_job"), _module(generated, "api.jobs.list_jobs")
    client = _client(generated, live, live.new_tenant_key())  # a new tenant: only these jobs are listed
    created = [create_job.sync("generic", client=client, body=models.JobCreate(inputs=_generic_inputs(generated, f"circle {i}"))).id
               for i in range(3)]

    pages, cursor = [], types.UNSET
    while True:
        page = list_jobs.sync(client=client, limit=2, cursor=cursor)
        assert isinstance(page, models.JobList)
        pages.append([job.id for job in page.data])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert pages == [created[::-1][:2], created[::-1][2:]]  # newest first, two then one


def test_a_correction_sent_through_the_client_is_listed(generated, live):
    models = _module(generated, "models")
    create_job = _module(generated, "api.jobs.create_job")
    add_feedback, list_feedback = _module(generated, "api.jobs.add_feedback"), _module(generated, "api.jobs.list_feedback")
    client = _client(generated, live, live.new_tenant_key())
    job = create_job.sync("generic", client=client, wait=30, body=models.JobCreate(inputs=_generic_inputs(generated, "big circle")))
    corrected = next(label for label in job.result.heads["label"].probabilities.additional_properties if label != job.result.heads["label"].label)

    response = add_feedback.sync_detailed(job.id, client=client, body=models.FeedbackCreate(
        labels=models.FeedbackCreateLabels.from_dict({"label": corrected}), comment="the model missed it", author="qa"))

    assert response.status_code == 201, response.content
    assert isinstance(response.parsed, models.FeedbackView) and response.parsed.labels["label"] == corrected
    listed = list_feedback.sync(job.id, client=client).data
    assert [(f.id, f.labels["label"], f.comment, f.author) for f in listed] == [(response.parsed.id, corrected, "the model missed it", "qa")]
