"""The web chat at /, in a real browser: Debian's chromium-headless-shell driven by Playwright against the real
pad_server. The page's answers must equal the API's for the same request, the token view must show PAD's
choices, Stop must free the request's slots, and a screenshot is kept in build/test-artifacts/. Where an answer
must be chosen text (Markdown, HTML, an error), Playwright's page.route stands in for /v1/chat/completions."""
import json
import re
import shutil
import time
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


def answer_texts(page):
    """The page's answers as the model wrote them (the page shows them rendered from Markdown)."""
    return [answer.get_attribute("data-text") for answer in page.locator(".message.assistant").all()]


def sse_body(answer, tokens=False):
    """`answer` streamed as pad_server streams: OpenAI's chat.completion.chunk events of a few characters each
    (so Markdown arrives split), with the token view's pad.tokens if `tokens`; the finish, the usage, [DONE]."""
    pieces = [answer[i:i + 3] for i in range(0, len(answer), 3)]
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    for i, piece in enumerate(pieces):
        chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        if tokens:
            chunk["pad"] = {"tokens": [{"text": piece, "reward": 0.5, "changed_top_choice": i % 2 == 0}]}
        chunks.append(chunk)
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": len(pieces),
                                            "total_tokens": 5 + len(pieces)}})
    return "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"


def fake_chat_completions(page, *replies, tokens=False):
    """Answers the page's chat requests in turn with `replies`: an answer's text, streamed, or (HTTP status,
    message) for an error in OpenAI's format. Returns the requests' bodies, a list that grows as they come."""
    bodies = []

    def reply(route):
        bodies.append(route.request.post_data_json)
        answer = replies[len(bodies) - 1]
        if isinstance(answer, tuple):
            status, message = answer
            route.fulfill(status=status, json={"error": {"message": message, "type": "server_error", "param": None,
                                                         "code": None}})
        else:
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=sse_body(answer, tokens))

    page.route("**/v1/chat/completions", reply)
    return bodies


def hold_chat_completions(page):
    """Holds the page's chat requests (a late first token) until the test answers them; returns their routes."""
    held = []
    page.route("**/v1/chat/completions", lambda route: held.append(route))
    return held


def wait_until(page, condition, timeout=10):
    """Lets the page (and the routes' handlers, which run only inside Playwright calls) go on until condition()."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(50)


def wait_for_answers(page, count):
    """Waits until the page shows `count` answers, none still streaming."""
    page.wait_for_function("count => document.querySelectorAll('.message.assistant').length === count"
                           " && !document.querySelector('.message[aria-busy]')", arg=count, timeout=30000)


def type_and_send(page, text):
    """Types as a user does (after whatever the box holds, unlike fill) and presses Enter."""
    page.locator("#input").press_sequentially(text)
    page.press("#input", "Enter")


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
    texts = answer_texts(page)
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
    text = answer_texts(page)[0]
    pad = {"principles": ["humorous"], "reward_model": "smollm2-demo"}
    assert text == api_answer(server, pad, 48, frequency_penalty=1)
    assert text != api_answer(server, pad, 48)
    page.close()


def test_stop_cancels_the_request(server, browser):
    """Stop frees the request's slots; the stopped answer stays, marked, and in the conversation as far as it
    got: the next request carries it."""
    page = browser.new_page()
    page.goto(page_url(server, prompt="Write a long story about a dragon", principles="humorous", max_tokens=400,
                       autorun=1))
    page.wait_for_selector(".message.assistant .content:not(:empty)", timeout=30000)
    assert server.metric("pad_requests_running") == 1
    page.click("#stop")
    page.wait_for_selector("body[data-state=error]", timeout=10000)
    assert page.locator(".message.assistant .mark").inner_text() == "(stopped)"
    assert wait_for(lambda: server.metric("pad_requests_running") == 0
                    and server.metric("pad_kv_cache_slots_used") == 0, 2)

    partial = answer_texts(page)[0]
    assert partial
    bodies = fake_chat_completions(page, "The end.")
    type_and_send(page, "Go on.")
    wait_for_answers(page, 2)
    assert bodies[0]["messages"] == [{"role": "user", "content": "Write a long story about a dragon"},
                                     {"role": "assistant", "content": partial},
                                     {"role": "user", "content": "Go on."}]
    assert answer_texts(page) == [partial, "The end."]
    page.close()


@pytest.mark.parametrize("status, message", [(429, "too many requests: 8 running, try again later"),
                                             (500, "the engine failed")])
def test_a_failed_turn_stays_marked_and_is_left_out_of_the_conversation(server, browser, status, message):
    """A failed turn stays on the page, marked with the error and as left out: the model never answered it, and
    the next request does not carry it."""
    page = browser.new_page()
    bodies = fake_chat_completions(page, (status, message), "A trout.")
    page.goto(page_url(server, prompt="Name a bird.", tokens=0, autorun=1))
    page.wait_for_selector("body[data-state=error]", timeout=10000)
    assert page.locator(".message.assistant .mark.error").inner_text() == (
        f"(error: {message}) — left out of the conversation")
    assert page.locator(".message.assistant .thinking").count() == 0
    type_and_send(page, "Name a fish.")
    wait_for_answers(page, 2)
    assert bodies[1]["messages"] == [{"role": "user", "content": "Name a fish."}]
    assert page.locator(".message.user .content").all_inner_texts() == ["Name a bird.", "Name a fish."]
    assert page.locator(".turn.left-out").count() == 2  # the failed question and its answer, dimmed
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
    answers = answer_texts(page)
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


def test_enter_sends_exactly_the_typed_text(server, browser):
    """Enter sends and empties the box; the next prompt, typed after it, goes out as typed, not after a newline
    (other tokens, another answer)."""
    page = browser.new_page()
    bodies = fake_chat_completions(page, "A robin.", "Robin.")
    page.goto(page_url(server, tokens=0))
    page.wait_for_selector("body[data-state=ready]", timeout=10000)
    type_and_send(page, "Name a bird.")
    wait_for_answers(page, 1)
    assert page.input_value("#input") == ""
    type_and_send(page, "Make it shorter.")
    wait_for_answers(page, 2)
    assert page.input_value("#input") == ""
    assert bodies[1]["messages"] == [{"role": "user", "content": "Name a bird."},
                                     {"role": "assistant", "content": "A robin."},
                                     {"role": "user", "content": "Make it shorter."}]
    page.close()


def test_enter_while_an_answer_streams_keeps_the_text(server, browser):
    """Enter during an answer sends nothing and keeps the typed text in the box, to be sent with Enter once the
    answer has ended."""
    page = browser.new_page()
    held = hold_chat_completions(page)
    page.goto(page_url(server, tokens=0))
    page.wait_for_selector("body[data-state=ready]", timeout=10000)
    type_and_send(page, "Name a bird.")
    wait_until(page, lambda: len(held) == 1)
    type_and_send(page, "Make it shorter.")
    page.wait_for_timeout(300)  # time for a wrong send to be seen
    assert len(held) == 1 and page.locator(".message.user").count() == 1
    assert page.input_value("#input") == "Make it shorter."
    held[0].fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=sse_body("A robin."))
    wait_for_answers(page, 1)
    assert page.input_value("#input") == "Make it shorter."
    page.press("#input", "Enter")
    wait_until(page, lambda: len(held) == 2)
    assert held[1].request.post_data_json["messages"][-1] == {"role": "user", "content": "Make it shorter."}
    assert page.input_value("#input") == ""
    held[1].fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=sse_body("Robin."))
    wait_for_answers(page, 2)
    page.close()


def test_answers_are_rendered_as_markdown_and_never_as_html(server, browser):
    """Headings, emphasis, code, lists and http(s) links become elements; HTML in an answer stays text (no element
    is made: the Content-Security-Policy would stop an inline script, not an <img>), and a javascript: link
    stays text."""
    answer = ("# Owls\n"
              "Owls are **birds** of *prey*; they `hoot()`.\nA line of its own.\n\n"
              "1. Barn owl\n2. Snowy owl\n\n"
              "- see [owls](https://example.com/owls) and [this](javascript:window.__pwned=3)\n\n"
              '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>\n\n'
              "```\n<b>not bold</b>\n```")
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    fake_chat_completions(page, answer)
    page.goto(page_url(server, prompt="Tell me about owls", tokens=0, autorun=1))
    page.wait_for_selector("body[data-state=done]", timeout=10000)
    content = page.locator(".message.assistant .content")
    assert content.locator("h3").inner_text() == "Owls"
    assert content.locator("p strong").inner_text() == "birds" and content.locator("p em").inner_text() == "prey"
    assert content.locator("p code").inner_text() == "hoot()" and content.locator("p br").count() == 1
    assert content.locator("ol li").all_inner_texts() == ["Barn owl", "Snowy owl"]
    assert content.locator("ul li").all_inner_texts() == ["see owls and [this](javascript:window.__pwned=3)"]
    link = content.locator("a")
    assert link.count() == 1 and link.get_attribute("href") == "https://example.com/owls"
    assert link.get_attribute("rel") == "noopener noreferrer"
    assert content.locator("pre code").inner_text() == "<b>not bold</b>"
    assert content.locator("img, script, b").count() == 0
    assert '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>' in content.inner_text()
    assert page.evaluate("window.__pwned") is None
    assert answer_texts(page) == [answer]
    assert not errors, errors
    page.close()


def test_token_view_keeps_the_markdown(server, browser):
    """With the token view, the rendered answer's text is wrapped in the tokens' spans (Markdown's markers not
    shown), whatever the tokens' boundaries."""
    page = browser.new_page()
    fake_chat_completions(page, "- **Barn** owl\n- *Snowy* owl", tokens=True)
    page.goto(page_url(server, prompt="Name two owls", tokens=1, autorun=1))
    page.wait_for_selector("body[data-state=done]", timeout=10000)
    content = page.locator(".message.assistant .content")
    assert content.locator("li").all_inner_texts() == ["Barn owl", "Snowy owl"]
    assert "".join(content.locator("li strong .tok").all_inner_texts()) == "Barn"
    assert "".join(content.locator("li em .tok").all_inner_texts()) == "Snowy"
    assert "".join(content.locator(".tok").all_inner_texts()) == "Barn owlSnowy owl"
    page.close()


def test_a_thinking_indicator_shows_until_the_first_token(server, browser):
    """From send to the first token the answer shows a live "Thinking…" and is aria-busy; the first token, not
    the end, takes the indicator away."""
    page = browser.new_page()
    held = hold_chat_completions(page)  # a late first token: the request waits for the test
    page.goto(page_url(server, prompt="Write a long story about a dragon", principles="humorous", max_tokens=400,
                       autorun=1))
    wait_until(page, lambda: len(held) == 1)
    answer = page.locator(".message.assistant")
    thinking = answer.locator(".thinking")
    assert thinking.is_visible() and thinking.inner_text() == "Thinking…"
    assert thinking.get_attribute("role") == "status" and thinking.get_attribute("aria-live") == "polite"
    assert answer.get_attribute("aria-busy") == "true"
    held[0].continue_()  # on to the real server, which streams
    page.wait_for_selector(".message.assistant .content:not(:empty)", timeout=30000)
    assert thinking.count() == 0
    assert page.evaluate("document.body.dataset.state") == "running"
    page.click("#stop")
    page.wait_for_selector("body[data-state=error]", timeout=10000)
    assert answer.get_attribute("aria-busy") is None
    assert wait_for(lambda: server.metric("pad_requests_running") == 0, 2)
    page.close()
