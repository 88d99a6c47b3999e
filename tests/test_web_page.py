"""The web page at `/`: its files come from the package and load nothing from elsewhere, and it works end to end
in a real headless Chromium (Debian's, driven by Playwright for Python) against a real uvicorn process.

Without Chromium the browser tests are skipped, unless GANCODEC_REQUIRE_BROWSER=1 (set by .ci/run, which installs
it with apt): there its absence is a failure. The end-to-end test's screenshot goes to GANCODEC_TEST_ARTIFACTS
(a folder; pytest's temporary folder when unset). The docs' screenshot is made by a test of its own, only when
asked for (see test_docs_screenshot).
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from api_support import ROOT, assert_problem, encode, running, serve, settings
from PIL import Image

from service.api.routers.web import ASSETS
from service.codec import decode_image
from service.codec.registry import ZOO, model_directories

try:  # the [test] extra installs it; without it only the in-process tests run
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    expect = sync_playwright = None

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Locator, Page, Route

WEB_DIR = ROOT / "service" / "web"
MODEL_ID, SC_MODEL_ID = "gc-tiny", "sc-tiny"  # conftest's test models
API_KEY = "web-key"
WIDTH, HEIGHT = 128, 96
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Debian's chromium (or GANCODEC_CHROMIUM); the browser tests skip without it, or fail where it is required."""
    found = os.environ.get("GANCODEC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    missing = None
    if sync_playwright is None:
        missing = "Playwright for Python is not installed: pip install -e '.[test]'"
    elif not found:
        missing = "Debian's chromium is not installed: apt-get install chromium (or point GANCODEC_CHROMIUM at one)"
    if missing:
        if os.environ.get("GANCODEC_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(f"the web page's browser tests are required here: {missing}", pytrace=False)
        pytest.skip(missing)
    assert found is not None
    return found


def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("GANCODEC_TEST_ARTIFACTS")
    if not configured:
        return tmp_path_factory.mktemp("artifacts")
    folder = Path(configured)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---- The files, in-process ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_page_and_its_assets_are_served_from_the_package(model_dir):
    async with running(settings(model_dir, api_keys="secret")) as (_, client):
        page = await client.get("/")  # open without a key, like /docs: the page asks for one when needed
        assets = re.findall(r'(?:src|href)="(web/[^"]+)"', page.text)
        fetched = {asset: await client.get("/" + asset) for asset in assets}
        modules = {name: await client.get(f"/web/{name}") for name in ASSETS if name.endswith(".js")}
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
    assert sorted(assets) == ["web/app.js", "web/style.css"]
    assert all(response.status_code == 200 for response in fetched.values())
    assert fetched["web/style.css"].headers["content-type"] == "text/css; charset=utf-8"
    for name, response in modules.items():
        assert response.headers["content-type"] == "text/javascript; charset=utf-8", name
        assert response.text == (WEB_DIR / name).read_text()


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/web/nope.js", "/web/__init__.py", "/web/..%2Fapi%2Fapp.py", "/web/"])
async def test_only_the_page_files_are_served(model_dir, path):
    async with running(settings(model_dir)) as (_, client):
        response = await client.get(path)
    assert_problem(response, "not-found")


def test_the_page_loads_nothing_from_another_origin():
    files = sorted(path for path in WEB_DIR.iterdir() if path.suffix in {".html", ".js", ".css"})
    assert {path.name for path in files} == set(ASSETS)
    for path in files:
        text = path.read_text()
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), path.name
        for module in re.findall(r'from "([^"]+)"', text):
            assert module.startswith("./") and (WEB_DIR / module).is_file(), (path.name, module)


# ---- End to end, in Chromium ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    executable = chromium_path()
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # empty: a fresh profile
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def server(browser: BrowserContext, model_dir: Path, sc_model_dir: Path, tmp_path_factory) -> Iterator[str]:
    """The GC and the SC test model, the SC one listed first and the GC one the default: the page must preselect
    the default, not the first. Asks for the browser first, so that no server starts when the tests skip."""
    env = {
        "GANCODEC_MODEL_DIRS": os.pathsep.join([str(sc_model_dir), str(model_dir)]),
        "GANCODEC_INCLUDE_ZOO": "false",
        "GANCODEC_MODEL": MODEL_ID,
        "GANCODEC_THREADS": "1",
        "GANCODEC_API_KEYS": API_KEY,
    }
    with serve(env, tmp_path_factory.mktemp("web-server") / "server.log") as url:
        yield url


@contextlib.contextmanager
def watched_page(browser: BrowserContext, server: str) -> Iterator[Page]:
    """A new tab that may reach `server` only; fails on script errors and on requests anywhere else."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            # The browser logs each 4xx answer; those the tests cause on purpose are checked where they happen.
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )

    def only_the_server(route: Route) -> None:
        url = route.request.url
        if url.startswith(server) or url.startswith(("blob:", "data:")):
            route.fallback()
        else:
            problems.append(f"request to another origin: {url}")
            route.abort()

    page.route("**/*", only_the_server)
    try:
        yield page
    finally:
        page.close()
    assert not problems, problems


@pytest.fixture
def page(browser: BrowserContext, server: str) -> Iterator[Page]:
    with watched_page(browser, server) as page:
        yield page


def _scene() -> np.ndarray:
    """A small synthetic picture (sky, ground, a sun, a little noise): smooth enough for classical codecs to show
    their usual artefacts, and for the screenshot to stay small."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    sky = np.stack([90 + 60 * y / HEIGHT, 150 + 50 * y / HEIGHT, 235 - 20 * y / HEIGHT], axis=-1)
    ground = np.stack([70 + 40 * x / WIDTH, 120 + 30 * np.sin(x / 9), 60 + 0 * x], axis=-1)
    image = np.where((y > HEIGHT * 0.6 + 6 * np.sin(x / 14))[..., None], ground, sky)
    sun = (x - WIDTH * 0.72) ** 2 + (y - HEIGHT * 0.3) ** 2 < 13**2
    image[sun] = (250, 215, 90)
    noise = np.random.default_rng(3).normal(0, 1.5, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def fixture_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("web-images") / "fixture.png"
    path.write_bytes(encode(_scene()))
    return path


def _open_with_key(page: Page, server: str) -> None:
    """Open the page: the server wants a key, so the page says so; typing it loads the models."""
    page.goto(server + "/")
    expect(page.get_by_role("alert")).to_contain_text("A valid API key is required")
    key = page.get_by_label("X-API-Key")
    expect(key).to_be_focused()  # the page opened the key box and moved there
    key.fill(API_KEY)
    key.press("Tab")
    chooser = page.get_by_label("Model", exact=True)
    expect(chooser).to_have_value(MODEL_ID)  # the default, though /models lists it second
    expect(chooser.locator("option")).to_contain_text([f"{SC_MODEL_ID}, ≤", f"{MODEL_ID} (default), ≤"])
    expect(page.get_by_role("alert")).to_be_hidden()


def _set_range(slider: Locator, value: int) -> None:
    slider.evaluate("(input, value) => { input.value = value; input.dispatchEvent(new Event('input')); }", str(value))


def test_upload_compress_compare_slide_and_download(page, server, fixture_image, tmp_path_factory):
    _open_with_key(page, server)
    expect(page.locator("#sc")).to_be_hidden()  # gc-tiny has no "sc" mode
    page.get_by_label("Image: PNG, JPEG or WebP").set_input_files(fixture_image)
    expect(page.locator("#image-info")).to_contain_text(f"{WIDTH} x {HEIGHT} pixels")

    page.get_by_role("button", name="Compress").click()
    expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
    right = page.locator("#right-img")
    expect(right).to_have_attribute("alt", "gancodec (gc-tiny) (right)")
    assert right.evaluate("img => img.complete && [img.naturalWidth, img.naturalHeight]") == [WIDTH, HEIGHT]
    rows = page.locator("#stats-body tr")
    expect(rows).to_have_count(4)
    expect(page.locator("#grid figure")).to_have_count(4)
    ours = page.locator('#stats-body tr[data-codec="gancodec"] td')
    ours_bytes = int(ours.nth(1).inner_text().replace(",", ""))
    for codec in ("avif", "webp", "jpeg"):
        expect(page.locator(f'#stats-body tr[data-codec="{codec}"] td').first).to_contain_text("quality")
    expect(page.locator("#timing")).to_contain_text("Compress")

    # The split, by keyboard: a real range input.
    split = page.get_by_label("Split between left and right")
    split.focus()
    for key, value in (("Home", "0"), ("ArrowRight", "1"), ("PageUp", "11"), ("End", "100"), ("ArrowLeft", "99")):
        split.press(key)
        expect(split).to_have_value(value)
    assert page.locator("#right-box").evaluate("box => box.style.clipPath") == "inset(0px 0px 0px 99%)"

    # ... and by mouse: drag the divider to a quarter of the viewer's width.
    _set_range(split, 50)
    viewer = page.locator("#viewer").bounding_box()
    grip = page.locator("#divider .grip").bounding_box()
    page.mouse.move(grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2)
    page.mouse.down()
    page.mouse.move(viewer["x"] + viewer["width"] * 0.25, grip["y"], steps=8)
    page.mouse.up()
    assert abs(int(split.input_value()) - 25) <= 1
    assert page.locator("#divider").evaluate("d => d.style.left") == f"{split.input_value()}%"

    # Zoom and pan are shared by the main viewer and every tile.
    def transforms() -> list[str]:
        return page.locator(".viewport .layer").evaluate_all("layers => layers.map(l => l.style.transform)")

    before = transforms()
    page.locator("#viewer").focus()
    page.keyboard.press("+")
    page.keyboard.press("ArrowRight")
    after = transforms()
    assert all(a != b for a, b in zip(before, after, strict=True))
    scales = {re.search(r"scale\(([\d.]+)\)", t).group(1) for t in after[:3]}
    assert len(scales) == 1  # the three layers of the split view move as one
    expect(page.locator("#zoom-level")).not_to_have_text("fit")
    page.get_by_role("button", name="Fit").click()

    # The downloads: the bitstream (magic GCX, the size the page reports) and the reconstruction.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the bitstream (.gcx)").click()
    bitstream = Path(download.value.path()).read_bytes()
    assert bitstream[:3] == b"GCX" and len(bitstream) == ours_bytes
    assert download.value.suggested_filename == "fixture.gcx"
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the reconstruction (PNG)").click()
    png = Path(download.value.path()).read_bytes()
    assert decode_image(png).pixels.shape == (HEIGHT, WIDTH, 3)
    assert download.value.suggested_filename == "fixture.gc-tiny.png"

    # A tile's button puts that codec on the right of the split.
    page.locator('#grid figure[data-codec="webp"]').get_by_role("button").click()
    expect(page.locator("#right-source")).to_have_value("webp")
    expect(page.locator("#viewer")).to_be_focused()

    # Detail restoration is on by default (format version 3); unticked, the form says so and the file is version 1.
    assert bitstream[3] == 3
    page.get_by_label("Restore detail").uncheck()
    with page.expect_response(lambda response: response.url.endswith("/compress")) as answer:
        page.get_by_role("button", name="Compress").click()
    assert b'name="detail"\r\n\r\nfalse' in answer.value.request.post_data_buffer
    expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the bitstream (.gcx)").click()
    plain = Path(download.value.path()).read_bytes()
    assert plain[3] == 1 and len(plain) < len(bitstream)

    artifacts = artifacts_dir(tmp_path_factory)
    page.screenshot(path=artifacts / "web-page.png", full_page=True)
    assert Image.open(artifacts / "web-page.png").size[0] == 1280


def test_every_control_is_reachable_by_keyboard_with_a_visible_focus(page, server, fixture_image):
    _open_with_key(page, server)
    page.get_by_label("Image: PNG, JPEG or WebP").set_input_files(fixture_image)
    page.get_by_role("button", name="Compress").click()
    expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
    page.locator("body").focus()
    reached: dict[str, dict] = {}
    for _ in range(60):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            """() => {
                const el = document.activeElement;
                const style = getComputedStyle(el);
                const name = el.labels?.[0]?.textContent || el.getAttribute('aria-label') || el.textContent;
                return {key: el.id || el.tagName + ':' + (el.closest('[data-codec]')?.dataset.codec || ''),
                        outline: style.outlineStyle, width: style.outlineWidth, name: (name || '').trim()};
            }"""
        )
        reached.setdefault(focused["key"], focused)
    for key in (
        "image",
        "model",
        "SUMMARY:",
        "compress",
        "download-gcx",
        "download-png",
        "left-source",
        "right-source",
        "zoom-out",
        "zoom-in",
        "zoom-fit",
        "zoom-one",
        "viewer",
        "split",
        "DIV:avif",
        "BUTTON:jpeg",
    ):
        assert key in reached, (key, sorted(reached))
        focus = reached[key]
        assert focus["outline"] != "none" and focus["width"] != "0px", focus
        assert focus["name"], focus  # every control has an accessible name


def _label_map(width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """A palette PNG: class 3 (road) on the left half, 7 (fence) on the right (a canvas would see colours, not ids)."""
    ids = np.full((height, width), 3, np.uint8)
    ids[:, width // 2 :] = 7
    image = Image.fromarray(ids, "P")
    image.putpalette([value for i in range(256) for value in (i, 255 - i, (i * 40) % 256)])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _form_fields(request) -> dict[str, list[bytes]]:
    raw = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode() + request.post_data_buffer
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    fields: dict[str, list[bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields.setdefault(name, []).append(part.get_payload(decode=True))
    return fields


def _drop(page: Page, path: Path, name: str) -> None:
    """Drag and drop a file onto the drop zone, as a user dragging it from a file manager would."""
    transfer = page.evaluate_handle(
        """([bytes, name]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/png'}));
            return transfer;
        }""",
        [list(path.read_bytes()), name],
    )
    page.locator("#drop").dispatch_event("drop", {"dataTransfer": transfer})


def test_sc_models_get_a_keep_mask_brush_and_classes_to_synthesise(page, server, fixture_image):
    _open_with_key(page, server)
    expect(page.locator("#sc")).to_be_hidden()  # the default, gc-tiny, is a GC model
    page.get_by_label("Model", exact=True).select_option(SC_MODEL_ID)
    expect(page.locator("#sc")).to_be_visible()
    expect(page.locator("#model-info")).to_contain_text("Modes: gc, sc")

    _drop(page, fixture_image, "dropped.png")
    expect(page.locator("#image-info")).to_contain_text(f"dropped.png: {WIDTH} x {HEIGHT}")

    # Paint a keep-mask over the viewer's centre with the mouse.
    page.get_by_label("Send a keep-mask painted on the original").check()
    expect(page.get_by_label("Brush size (image pixels)")).to_be_visible()
    _set_range(page.get_by_label("Brush size (image pixels)"), 8)
    box = page.locator("#viewer").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 40, cy)
    page.mouse.down()
    page.mouse.move(cx + 40, cy, steps=6)
    page.mouse.up()

    # A label map: its classes are listed by the model's names, and the chosen ones are synthesised.
    page.get_by_label("Label map: PNG of the image's size holding class ids (optional)").set_input_files(
        files=[{"name": "labels.png", "mimeType": "image/png", "buffer": _label_map()}]
    )
    expect(page.locator("#labels-info")).to_have_text(f"labels.png: {WIDTH} x {HEIGHT}, 2 classes.")
    expect(page.locator("#class-list label")).to_have_text(
        ["road (3): 50.0% of the image", "fence (7): 50.0% of the image"]
    )
    page.get_by_label("fence (7): 50.0% of the image").check()

    with page.expect_response(f"{server}/compress") as answer:
        page.get_by_role("button", name="Compress").click()
    assert answer.value.status == 200, answer.value.text()
    fields = _form_fields(answer.value.request)
    assert fields["model"] == [SC_MODEL_ID.encode()] and fields["synthesize"] == [b"7"]
    assert fields["labels"] == [_label_map()]
    mask = np.asarray(Image.open(io.BytesIO(fields["mask"][0])).convert("L"))
    assert mask.shape == (HEIGHT, WIDTH) and set(np.unique(mask)) == {0, 255}
    assert mask[HEIGHT // 2, WIDTH // 2] == 255 and mask[0, 0] == 0  # painted centre kept, corner not
    expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
    expect(page.locator("#right-img")).to_have_attribute("alt", f"gancodec ({SC_MODEL_ID}) (right)")
    expect(page.locator('#stats-body tr[data-codec="gancodec"] td').first).to_have_text(SC_MODEL_ID)

    # A label map of another size: the page warns, and shows the service's problem when sent anyway.
    page.get_by_label("Label map: PNG of the image's size holding class ids (optional)").set_input_files(
        files=[{"name": "small.png", "mimeType": "image/png", "buffer": _label_map(32, 16)}]
    )
    expect(page.locator("#labels-info")).to_contain_text("It is not the image's size")
    with page.expect_response(f"{server}/compress") as answer:
        page.get_by_role("button", name="Compress").click()
    problem = answer.value.json()
    assert answer.value.status == 422 and problem["type"] == "urn:gancodec:problem:mask-size-mismatch"
    expect(page.get_by_role("alert")).to_have_text(f"{problem['title']}: {problem['detail']}")
    expect(page.locator("#status")).to_have_text("Failed.")
    expect(page.get_by_role("button", name="Compress")).to_be_enabled()

    # Back to the GC model: the selective controls go, and nothing selective is sent.
    page.get_by_label("Model", exact=True).select_option(MODEL_ID)
    expect(page.locator("#sc")).to_be_hidden()
    with page.expect_response(f"{server}/compress") as answer:
        page.get_by_role("button", name="Compress").click()
    assert answer.value.status == 200
    assert set(_form_fields(answer.value.request)) == {"image", "model"}
    expect(page.locator("#status")).to_contain_text("Done", timeout=60_000)
    expect(page.get_by_role("alert")).to_be_hidden()


# ---- The screenshot in the docs ------------------------------------------------------------------------------------

DOCS_SCREENSHOT = os.environ.get("GANCODEC_DOCS_SCREENSHOT")
DOCS_PHOTO = Path(os.environ.get("GANCODEC_DOCS_PHOTO", ROOT.parent / "shared" / "data" / "photos" / "035.webp"))


@pytest.mark.skipif(not DOCS_SCREENSHOT, reason="set GANCODEC_DOCS_SCREENSHOT=docs/images/web-page.png to make it")
def test_docs_screenshot(browser: BrowserContext, tmp_path: Path) -> None:
    """docs/images/web-page.png: a photo through the shipped default model (service/zoo), as a user sees it."""
    assert DOCS_SCREENSHOT is not None
    if not DOCS_PHOTO.is_file():
        pytest.fail(f"no photo at {DOCS_PHOTO}: point GANCODEC_DOCS_PHOTO at one", pytrace=False)
    if not model_directories(ZOO) and not os.environ.get("GANCODEC_MODEL_DIRS"):
        pytest.fail(f"no model in {ZOO}: export a trained one there first", pytrace=False)
    env = {"GANCODEC_INCLUDE_ZOO": "true", "GANCODEC_API_KEYS": ""}  # GANCODEC_MODEL(_DIRS) as the caller set them
    with serve(env, tmp_path / "server.log") as url, watched_page(browser, url) as page:
        page.goto(url + "/")
        expect(page.get_by_label("Model", exact=True)).not_to_have_value("")
        expect(page.get_by_role("alert")).to_be_hidden()  # models listed: the zoo has at least one
        page.get_by_label("Image: PNG, JPEG or WebP").set_input_files(DOCS_PHOTO)
        page.get_by_role("button", name="Compress").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=300_000)
        expect(page.locator("#grid figure")).to_have_count(4)
        page.wait_for_function("() => [...document.images].every(img => !img.src || img.complete)")
        output = Path(DOCS_SCREENSHOT)
        output.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=output, full_page=True)
