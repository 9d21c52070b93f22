"""Save a screenshot of the explorer for a run: python scripts/screenshot_explorer.py RUN OUT.png

Needs the web extra, playwright and /usr/bin/chromium. Draws a "7" on the pad first so every
section of the page shows something.
"""

from __future__ import annotations

import sys
import threading
import time

from playwright.sync_api import sync_playwright

from mnist_vae.serve.app import create_app, listen_socket, make_server

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def main(run: str, out: str) -> None:
    sock = listen_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server = make_server(create_app(run))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        # The first slider on the page moves the first active dimension (a 2-D latent has a plane instead).
        page.evaluate("""() => {
            const el = document.querySelector('#sliders input[type=range]');
            if (el) { el.value = 2.0; el.dispatchEvent(new Event('input')); }
        }""")
        pad = page.locator("#pad")
        pad.scroll_into_view_if_needed()
        b = pad.bounding_box()
        assert b is not None, "the drawing pad is not visible"
        pts = [(0.25, 0.22), (0.75, 0.22), (0.6, 0.5), (0.45, 0.82)]  # a "7"
        page.mouse.move(b["x"] + b["width"] * pts[0][0], b["y"] + b["height"] * pts[0][1])
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            for k in range(1, 11):
                page.mouse.move(b["x"] + b["width"] * (x0 + (x1 - x0) * k / 10), b["y"] + b["height"] * (y0 + (y1 - y0) * k / 10))
        page.mouse.up()
        page.wait_for_function("Number(document.querySelector('#pad-recon').dataset.rendered) > 0")
        page.evaluate("window.scrollTo(0, 0)")
        time.sleep(0.3)
        page.screenshot(path=out, full_page=True)
        browser.close()
    server.should_exit = True
    try:  # a 256-colour palette keeps the README image small; the page has few colours anyway
        from PIL import Image

        Image.open(out).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
    except ImportError:
        pass


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
