"""The explorer's published OpenAPI schema is true: what it says matches what the server does.

A schemathesis run with every check (``schemathesis run URL/openapi.json --checks all``) against
uvicorn on 127.0.0.1, bounded in examples; and the schema's details checked one by one.
"""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")
pytest.importorskip("httpx", reason="httpx (needed by FastAPI's TestClient) is not installed")

from mnist_vae.serve.app import create_app
from mnist_vae.serve.schema import IMAGE_B64_CHARS

from _serve_helpers import Served, shared_run, small_dataset, with_active_dims

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx vs httpx2
    from fastapi.testclient import TestClient

#: Examples per operation and phase: the 16-dimensional run gets the full search, the 2-dimensional
#: one (whose differences are the manifold figure and the length of z) a shorter one; about 10 s in all.
MAX_EXAMPLES = {16: 30, 2: 10}
ERROR_REF = {"$ref": "#/components/schemas/ErrorAnswer"}


@pytest.fixture(scope="module")
def small():
    return small_dataset()


@pytest.fixture(scope="module")
def apps(tmp_path_factory, small):
    """Apps for a 16-dimensional run (3 active dimensions) and a 2-dimensional one."""
    run16, run2 = shared_run(tmp_path_factory, small, 16), shared_run(tmp_path_factory, small, 2)
    return {16: create_app(with_active_dims(run16, small), dataset=small), 2: create_app(run2, dataset=small)}


@pytest.fixture(scope="module")
def schemas(apps):
    out = {}
    for dim, app in apps.items():
        with TestClient(app) as c:
            r = c.get("/openapi.json")
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            out[dim] = r.json()
    return out


def test_no_documentation_page_that_would_load_scripts_from_the_internet(apps):
    with TestClient(apps[16]) as c:
        for path in ("/docs", "/redoc"):
            assert c.get(path).status_code == 404


def test_decode_takes_exactly_latent_dim_bounded_numbers(schemas):
    for dim, schema in schemas.items():
        z = schema["components"]["schemas"]["DecodeRequest"]["properties"]["z"]
        assert z["minItems"] == z["maxItems"] == dim
        assert z["items"]["minimum"] == -10 and z["items"]["maximum"] == 10


def test_test_digit_index_has_its_range(schemas):
    (param,) = schemas[16]["paths"]["/api/test/{index}"]["get"]["parameters"]
    assert param["in"] == "path" and param["schema"]["type"] == "integer"
    assert (param["schema"]["minimum"], param["schema"]["maximum"]) == (0, 199)
    body = schemas[16]["components"]["schemas"]["InterpolateRequest"]["properties"]
    assert [(body[k]["minimum"], body[k]["maximum"]) for k in ("a", "b")] == [(0, 199), (0, 199)]


def test_figures_are_documented_as_png_with_their_404(schemas):
    for path in ("/api/loss_curves.png", "/api/manifold.png"):
        responses = schemas[16]["paths"][path]["get"]["responses"]
        assert list(responses["200"]["content"]) == ["image/png"]
        assert responses["404"]["content"] == {"application/json": {"schema": ERROR_REF}}
    assert "2-D latent only" in schemas[16]["paths"]["/api/manifold.png"]["get"]["responses"]["404"]["description"]


def test_every_error_is_documented_as_the_error_body(schemas):
    seen = set()
    for path, ops in schemas[16]["paths"].items():
        for method, op in ops.items():
            codes = {int(c) for c in op["responses"]}
            assert {405, 413} <= codes, f"{method} {path}"
            if method == "post" or "{" in path:
                assert 422 in codes, f"{method} {path}"
            if method == "post":
                assert 400 in codes, f"{method} {path}"
            for code, resp in op["responses"].items():
                if int(code) >= 400:
                    seen.add(int(code))
                    assert resp["content"] == {"application/json": {"schema": ERROR_REF}}, f"{method} {path} {code}"
            assert op["responses"]["405"]["headers"]["Allow"]["required"] is True
    assert seen == {400, 404, 405, 413, 422}
    components = schemas[16]["components"]["schemas"]
    assert components["ErrorAnswer"]["required"] == ["error"]
    assert "HTTPValidationError" not in components  # FastAPI's {"detail": ...}, which this API never answers


def test_json_answers_have_models(schemas):
    paths = schemas[16]["paths"]
    models = {
        path: op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for path, ops in paths.items()
        for op in ops.values()
        if "application/json" in op["responses"]["200"].get("content", {})
    }
    assert models == {
        "/api/info": "Info",
        "/api/projection": "Projection",
        "/api/test/{index}": "TestDigit",
        "/api/decode": "Decoded",
        "/api/samples": "Samples",
        "/api/interpolate": "Images",
        "/api/encode": "Encoded",
    }
    components = schemas[16]["components"]["schemas"]
    assert components["Decoded"]["properties"]["image"]["minLength"] == IMAGE_B64_CHARS
    assert components["TestDigit"]["properties"]["mu"]["maxItems"] == 16
    assert "active" in components["Info"]["required"]


@pytest.mark.parametrize("dim", [16, 2])
def test_schemathesis_finds_no_disagreement(apps, dim):
    """``schemathesis run URL/openapi.json --checks all``, every phase, bounded, against a real server."""
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
    from schemathesis.config import SchemathesisConfig
    from schemathesis.engine import events, from_schema
    from schemathesis.generation import GenerationMode

    config = SchemathesisConfig(seed=dim)
    project = config.projects.override
    project.checks.update(included_check_names=["all"])
    project.phases.update(phases=["examples", "coverage", "fuzzing", "stateful"])
    project.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES[dim], database="none", no_shrink=True
    )
    server = Served(apps[dim])
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)
        failures, errors, cases = set(), [], 0
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                cases += len(event.recorder.cases)
                for checks in event.recorder.checks.values():
                    for check in checks:
                        if check.failure_info is not None:
                            failure = check.failure_info.failure
                            failures.add(f"{event.recorder.label}: {check.name}: {failure.title}: {failure.message}"[:400])
            elif isinstance(event, (events.NonFatalError, events.FatalError)):
                errors.append(str(getattr(event, "value", None) or getattr(event, "exception", event))[:400])
    finally:
        server.stop()
    assert not errors, "\n".join(errors)
    assert not failures, f"{len(failures)} disagreements:\n" + "\n".join(sorted(failures))
    assert cases > 9 * MAX_EXAMPLES[dim]  # every operation was exercised
