import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Notebooks and nbgrader kernels run on the CPU here, with the same threads CI has.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium through Playwright, one for the whole session (Playwright's
    sync API cannot be started twice in one process). Missing: a skip on a
    developer's machine, a failure in CI, which installs it."""
    if not CHROMIUM:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """Build the book once, exactly as `make book` does, into a scratch folder
    (or, with EDGPT_SITE=_build/html, test a site `make book` has just built)."""
    if os.environ.get("EDGPT_SITE"):
        return (REPO / os.environ["EDGPT_SITE"]).resolve()
    if not (REPO / "book/_static/mermaid/mermaid.esm.min.mjs").exists():
        pytest.fail("book/_static/mermaid is missing: run the tests with `make test`, "
                    "which copies mermaid out of its npm package first")
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run(
        [str(jb), "build", str(REPO), "--warningiserror", "--keep-going", "--path-output", str(out)],
        capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, f"the book build failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return out / "_build" / "html"


@pytest.fixture(scope="session")
def zh_site(site, tmp_path_factory):
    """The Chinese edition, in the site's folder zh/ (`make book-zh` puts it
    there; built there now when it has not)."""
    if not (site / "zh").is_dir():
        from autograder import translations

        translations.build(out=tmp_path_factory.mktemp("zh"), site=site, quiet=True)
    return site / "zh"


@pytest.fixture(scope="session", params=["en", "zh"])
def edition(request):
    """An edition's folder in the site, as a URL prefix: "" (English) or "zh/"."""
    if request.param == "zh":
        request.getfixturevalue("zh_site")
        return "zh/"
    return ""
