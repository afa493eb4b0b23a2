"""The web chat at /, in a real browser: Debian's chromium-headless-shell driven by Playwright against the real
pad_server. The page's answers must equal the API's for the same request, the token view must show PAD's
choices, Stop must free the request's slots, and a screenshot is kept in build/test-artifacts/."""
import re
import shutil
import urllib.parse
import urllib.request

import openai
import pytest

from conftest import BUILD, ROOT
from server_fixture import Server, wait_for

CHROMIUM = shutil.which("chromium-headless-shell")
DEMO_PRM = ROOT / "prm" / "SmolLM2-135M-PAD-demo"
MODEL = "SmolLM2-135M-Instruct"
TOKEN = "web-token"
ARTIFACTS = BUILD / "test-artifacts"


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("web") / "token"
    token_file.write_text(TOKEN)
    s = Server(model_dir, "--kv_slots=8", f"--reward_models=smollm2-demo=:{DEMO_PRM},identity",
               f"--auth_token_file={token_file}")
    yield s
    s.stop_and_check()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("chromium-headless-shell is missing; run ./scripts/setup.sh")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def page_url(server, **params):
    return f"http://127.0.0.1:{server.http_port}/?{urllib.parse.urlencode({'token': TOKEN, **params})}"


def api_answer(server, pad, max_tokens, **fields):
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.http_port}/v1", api_key=TOKEN, max_retries=0)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Tell me about owls"}],
                                          max_tokens=max_tokens, temperature=0, extra_body={"pad": pad},
                                          **fields).choices[0].message.content


def test_assets_are_served_and_load_nothing_from_elsewhere(server):
    for path, content_type in [("/", "text/html"), ("/index.html", "text/html"), ("/app.js", "text/javascript"),
                               ("/style.css", "text/css")]:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}{path}", timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith(content_type)
            assert response.headers["Content-Security-Policy"] == "default-src 'self'"
            body = response.read().decode()
        assert body == (ROOT / "web" / ("index.html" if path == "/" else path[1:])).read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", body) and "url(http" not in body, path


def test_compare_and_token_view(server, browser):
    """Vanilla and PAD side by side, streamed; each equals the API's answer; PAD's tokens are coloured by
    reward, some marked changed, and hovering one shows its ten candidates with the chosen one marked."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # A Content-Security-Policy violation (an inline style, a load from elsewhere) is a console error.
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(page_url(server, prompt="Tell me about owls", principles="humorous", compare=1, tokens=1,
                       max_tokens=24, temperature=0, autorun=1))
    page.wait_for_selector("body[data-state=done]", timeout=60000)
    answers = page.locator(".message.assistant")
    assert answers.count() == 2
    assert answers.nth(0).locator(".who").inner_text() == "Vanilla"
    assert answers.nth(1).locator(".who").inner_text() == "PAD (humorous)"
    texts = [answers.nth(i).locator(".content").inner_text() for i in range(2)]
    assert texts[0] == api_answer(server, {"mode": "vanilla"}, 24)
    assert texts[1] == api_answer(server, {"principles": ["humorous"], "reward_model": "smollm2-demo"}, 24)
    assert texts[0] != texts[1]

    pad_tokens = answers.nth(1).locator(".tok")
    changed = answers.nth(1).locator(".tok.changed")
    assert pad_tokens.count() > 0 and changed.count() > 0
    assert "PAD changed" in answers.nth(1).locator(".stats").inner_text()
    changed.first.hover()
    tooltip = page.locator("#tooltip")
    assert tooltip.is_visible()
    assert tooltip.locator("tr").count() == 11  # a header and the ten candidates
    assert tooltip.locator("tr.chosen").count() == 1
    chosen_rank = int(tooltip.locator("tr.chosen td").nth(1).inner_text())
    assert chosen_rank > 1  # changed: not the policy's top choice
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web_chat.png"))
    assert not errors, errors
    page.close()


def test_frequency_penalty_is_sent(server, browser):
    """The page's frequency penalty reaches the engine: its answer is the API's with that penalty, not without."""
    page = browser.new_page()
    page.goto(page_url(server, prompt="Tell me about owls", principles="humorous", max_tokens=48, temperature=0,
                       frequency_penalty=1, autorun=1))
    page.wait_for_selector("body[data-state=done]", timeout=60000)
    text = page.locator(".message.assistant .content").inner_text()
    pad = {"principles": ["humorous"], "reward_model": "smollm2-demo"}
    assert text == api_answer(server, pad, 48, frequency_penalty=1)
    assert text != api_answer(server, pad, 48)
    page.close()


def test_stop_cancels_the_request(server, browser):
    page = browser.new_page()
    page.goto(page_url(server, prompt="Write a long story about a dragon", principles="humorous", max_tokens=400,
                       autorun=1))
    page.wait_for_selector(".message.assistant .content:not(:empty)", timeout=30000)
    assert server.metric("pad_requests_running") == 1
    page.click("#stop")
    page.wait_for_selector("body[data-state=error]", timeout=10000)
    assert "[stopped]" in page.locator(".message.assistant").inner_text()
    assert wait_for(lambda: server.metric("pad_requests_running") == 0
                    and server.metric("pad_kv_cache_slots_used") == 0, 2)
    page.close()


def test_a_second_turn_continues_the_conversation(server, browser):
    """The second request carries the first answer: the page's second answer equals the API's for the whole
    conversation."""
    page = browser.new_page()
    page.goto(page_url(server, prompt="Name a bird.", mode="vanilla", tokens=0, max_tokens=8, temperature=0,
                       autorun=1))
    page.wait_for_selector("body[data-state=done]", timeout=30000)
    page.fill("#input", "Why that one?")
    page.press("#input", "Enter")
    page.wait_for_selector("body[data-state=done]", timeout=30000)
    answers = page.locator(".message.assistant .content").all_inner_texts()
    assert len(answers) == 2 and page.locator(".message.user").count() == 2
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.http_port}/v1", api_key=TOKEN, max_retries=0)
    messages = [{"role": "user", "content": "Name a bird."}, {"role": "assistant", "content": answers[0]},
                {"role": "user", "content": "Why that one?"}]
    expected = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0)
    assert answers[1] == expected.choices[0].message.content
    page.close()


def test_without_the_token_the_page_says_so(server, browser):
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{server.http_port}/")
    page.wait_for_selector("body[data-state=error]", timeout=10000)
    assert "bearer token" in page.locator("#model").inner_text()
    page.close()
