"""The explorer page in a real browser: Debian's chromium driven by Playwright, against uvicorn."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

from mnist_vae.serve.app import create_app  # noqa: E402

from _serve_helpers import ACTIVE_DIMS, Served, shared_run, small_dataset, with_active_dims  # noqa: E402

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def small():
    return small_dataset()


def _site(tmp_path_factory, small, latent_dim: int):
    """Serve the tiny run with this latent size (16: dimensions 2, 9 and 13 made active); yields its URL."""
    out = shared_run(tmp_path_factory, small, latent_dim=latent_dim)
    s = Served(create_app(with_active_dims(out, small) if latent_dim == 16 else out, dataset=small))
    yield s.url
    s.stop()


@pytest.fixture(scope="module")
def site16(tmp_path_factory, small):
    yield from _site(tmp_path_factory, small, 16)


@pytest.fixture(scope="module")
def site2(tmp_path_factory, small):
    yield from _site(tmp_path_factory, small, 2)


@pytest.fixture(scope="module")
def browser():
    pw = sync_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
    except Exception as e:  # a broken chromium install is an environment problem, not a page bug
        pw.stop()
        pytest.skip(f"chromium does not start: {str(e).splitlines()[0]}")
    yield b
    b.close()
    pw.stop()


def open_page(browser, url):
    """A loaded page and the list its console errors go into."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    return page, errors


def rendered(page, selector: str) -> int:
    return int(page.get_attribute(selector, "data-rendered") or 0)


def wait_rendered(page, selector: str, more_than: int) -> None:
    page.wait_for_function(f"Number(document.querySelector({selector!r}).dataset.rendered) > {more_than}", timeout=10000)


def data_url(page, selector: str) -> str:
    return page.eval_on_selector(selector, "c => c.toDataURL()")


@pytest.fixture(scope="module")
def page16(browser, site16):
    page, errors = open_page(browser, site16)
    yield page, errors
    page.close()


def test_page_loads_without_console_errors(page16):
    page, errors = page16
    assert errors == []
    assert page.is_hidden("#status")
    for title in ("Samples", "Latent space", "Interpolation", "Draw a digit", "Run facts"):
        assert page.locator("h2", has_text=title).count() == 1
    assert page.locator("#sliders input[type=range]").count() == 16
    assert "final test loss" in page.inner_text("#facts-list")
    assert page.eval_on_selector("#loss-curves", "img => img.complete && img.naturalWidth > 0")
    assert rendered(page, "#samples-grid") >= 1 and rendered(page, "#interp-strip") >= 1


def test_moving_a_slider_changes_the_image(page16):
    page, errors = page16
    before_n, before = rendered(page, "#latent-image"), data_url(page, "#latent-image")
    d = ACTIVE_DIMS[1]  # the second slider on the page moves dimension 9
    page.eval_on_selector(f"#z-{d}", "el => { el.value = el.max; el.dispatchEvent(new Event('input')); }")
    wait_rendered(page, "#latent-image", before_n)
    top = page.get_attribute(f"#z-{d}", "max")
    page.wait_for_function(f"document.querySelector('#latent-z').textContent.split(', ')[{d}].startsWith('{top}')")
    assert data_url(page, "#latent-image") != before
    assert errors == []


def test_active_dimensions_come_first_and_inactive_ones_are_marked(page16):
    page, errors = page16
    sliders = page.eval_on_selector_all(
        "#sliders > *", "els => els.map(e => [e.tagName, e.id, e.dataset.dim ?? null, e.dataset.active ?? null, e.textContent])"
    )
    inputs = [(int(dim), active == "1") for tag, _, dim, active, _ in sliders if tag == "INPUT"]
    assert inputs == [(d, d in ACTIVE_DIMS) for d in (*ACTIVE_DIMS, *(d for d in range(16) if d not in ACTIVE_DIMS))]
    heads = [(i, text) for i, (tag, *_, text) in enumerate(sliders) if tag == "DIV"]
    assert [text.split(":")[0] for _, text in heads] == ["active (3 of 16)", "inactive"]
    assert "inactive: moves nothing" in heads[1][1]
    # The inactive heading sits between the last active slider and the first inactive one.
    first_inactive = next(i for i, (tag, _, _, active, _) in enumerate(sliders) if tag == "INPUT" and active == "0")
    last_active = max(i for i, (tag, _, _, active, _) in enumerate(sliders) if tag == "INPUT" and active == "1")
    assert last_active < heads[1][0] < first_inactive
    # Greyed, labelled, and still mapped to their own dimension.
    assert page.eval_on_selector("#z-0", "el => el.classList.contains('inactive') && getComputedStyle(el).opacity < 1")
    assert "inactive" in page.get_attribute("#z-0", "aria-label")
    assert not page.eval_on_selector(f"#z-{ACTIVE_DIMS[0]}", "el => el.classList.contains('inactive')")
    n = rendered(page, "#latent-image")
    page.eval_on_selector("#z-15", "el => { el.value = 1.23; el.dispatchEvent(new Event('input')); }")
    wait_rendered(page, "#latent-image", n)
    page.wait_for_function("document.querySelector('#latent-z').textContent.split(', ')[15].startsWith('1.23')")
    assert page.inner_text("#z-15-val") == "1.23"
    assert errors == []


def test_new_samples_with_another_seed_change_the_grid(page16):
    page, errors = page16
    before_n, before = rendered(page, "#samples-grid"), data_url(page, "#samples-grid")
    page.fill("#seed", "12345")
    page.click("#new-samples")
    wait_rendered(page, "#samples-grid", before_n)
    assert data_url(page, "#samples-grid") != before
    assert errors == []


def test_drawing_a_stroke_shows_reconstruction_code_and_projection(page16):
    page, errors = page16
    assert rendered(page, "#pad-recon") == 0
    scatter_n = rendered(page, "#scatter")
    page.locator("#pad").scroll_into_view_if_needed()
    box = page.locator("#pad").bounding_box()
    x, y = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, 13):  # a vertical stroke: a "1"
        page.mouse.move(x + k, y + k * box["height"] * 0.05)
    page.mouse.up()
    wait_rendered(page, "#pad-recon", 0)
    wait_rendered(page, "#scatter", scatter_n)
    assert rendered(page, "#pad-input") >= 1
    mu_text = page.inner_text("#mu-text")
    assert mu_text.startswith("μ = [") and mu_text.count(",") == 15
    assert "nearest test digits" in page.inner_text("#neighbours")
    # The reconstruction is not blank.
    ink = page.eval_on_selector(
        "#pad-recon", "c => c.getContext('2d').getImageData(0, 0, 28, 28).data.reduce((s, v, i) => s + (i % 4 ? 0 : v), 0)"
    )
    assert ink > 0
    assert errors == []


def test_api_refuses_malformed_input_from_the_page(page16):
    page, _ = page16
    statuses = page.evaluate("""async () => {
        const post = (path, body) => fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'}, body})
            .then(async r => [r.status, (await r.json()).error]);
        return [
            await post('/api/decode', JSON.stringify({z: [1, 2]})),
            await post('/api/decode', '{"z": "nope"'),
            await post('/api/encode', JSON.stringify({image: Array(784).fill(2)})),
            await post('/api/samples', JSON.stringify({seed: 1, n: 1000})),
            await post('/api/encode', JSON.stringify({image: Array(20000).fill(0.5)})),
        ];
    }""")
    assert [s for s, _ in statuses] == [422, 422, 422, 422, 413]
    assert all(isinstance(msg, str) and msg for _, msg in statuses)
    assert "expected 16 numbers" in statuses[0][1]


def test_two_dimensional_latent_gets_a_clickable_plane(browser, site2):
    page, errors = open_page(browser, site2)
    try:
        assert page.is_visible("#plane") and page.is_hidden("#sliders")
        page.wait_for_function("document.querySelector('#plane-bg').complete && document.querySelector('#plane-bg').naturalWidth === 420")
        before_n, before = rendered(page, "#latent-image"), data_url(page, "#latent-image")
        page.locator("#plane").scroll_into_view_if_needed()
        box = page.locator("#plane").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.9)
        wait_rendered(page, "#latent-image", before_n)
        z = page.inner_text("#latent-z")
        assert z.startswith("z = [-2.") and ", -2." in z  # bottom left of [-3, 3]^2
        assert data_url(page, "#latent-image") != before
        assert errors == []
    finally:
        page.close()
