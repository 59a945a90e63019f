"""Regenerate the console screenshots in docs/images/ (console-queue.png, console-case.png).

Starts the embedded service (SQLite and blobs in a temporary folder, the in-process
worker), trains a tiny support_ticket network on the plugin's generated sample data,
sends sample tickets through the REST API, logs Debian's headless Chromium into the
console and photographs the review queue and the least confident case.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/console_screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from twinlens.cli.service import EmbeddedService, train_sample_model
from twinlens.contract.registry import get_plugin
from twinlens.db.migrate import upgrade
from twinlens.db.session import Database
from twinlens.services import keys
from twinlens.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--plugin", default="support_ticket")
    parser.add_argument("--rows", type=int, default=80, help="generated training rows")
    parser.add_argument("--cases", type=int, default=8, help="sample cases sent to the service")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("Debian's chromium is needed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="twinlens-shots-") as scratch:
        root = Path(scratch)
        bundle = train_sample_model(args.plugin, root / "model", rows=args.rows, epochs=2, tiny=True, preset="network")
        settings = Settings(data_dir=root / "data", broker_url=None, model_roots=[root], max_wait_seconds=60)
        database = Database(settings.resolved_database_url)
        upgrade(database.engine)
        with database.session() as session:
            _, admin = keys.create_key(session, "operator", platform_admin=True)
        service = EmbeddedService(settings, port=0, database=database).build(migrate=False).start()
        try:
            key = _seed(service.url, admin, bundle, args.plugin, args.cases, root)
            _photograph(service.url, key, chromium, args.out)
        finally:
            service.close()
    print(f"wrote {args.out / 'console-queue.png'} and {args.out / 'console-case.png'}")


def _seed(url: str, admin: str, bundle: Path, plugin_name: str, cases: int, root: Path) -> str:
    """A tenant (acme-support) with its model and a few sample tickets; returns its admin key."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=120) as client:
        response = client.post("/v1/keys", json={"tenant": "acme-support", "admin": True})
        response.raise_for_status()
        key = response.json()["key"]
    plugin = get_plugin(plugin_name)
    samples = plugin.read_dataset(plugin.make_sample_dataset(root / "samples", n=cases, seed=7)).samples[:cases]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
        client.post("/v1/models", json={"bundle_path": str(bundle), "activate": True, "scope": "tenant"}).raise_for_status()
        for sample in samples:
            files = {"image": ("photo.png", _png(sample.image), "image/png")} if sample.image is not None else None
            texts = {name: value for name, value in sample.texts.items() if value}
            client.post(f"/v1/plugins/{plugin_name}/jobs", params={"wait": 60, "explain": "true"}, data=texts,
                        files=files).raise_for_status()
    return key


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _photograph(url: str, key: str, chromium: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(base_url=url, viewport={"width": 1280, "height": 860}).new_page()
            page.goto("/console/login")
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url("**/console/queue")
            page.screenshot(path=str(out / "console-queue.png"), full_page=True)
            page.locator("#start").click()
            page.wait_for_url("**/console/cases/*")
            page.locator("#heatmap, #case-image").first.wait_for()
            page.screenshot(path=str(out / "console-case.png"), full_page=True)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
