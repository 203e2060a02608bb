"""The page in a real browser (headless Chromium via Playwright) against a live server with a micro model:
each view works, the pictures have the shapes of the data, and an error is shown while the server goes on."""

import pytest


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors, elsewhere = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith(server) else elsewhere.append(r.url))
    page.goto(server)
    page.wait_for_selector("#model option", state="attached")
    yield page
    context.close()
    assert not errors, errors  # no uncaught JavaScript error on the way
    assert not elsewhere, elsewhere  # nothing fetched from anywhere but the explorer's server


def expect(locator):
    """Playwright's retrying assertion: the page updates after the answer arrives, so wait for it, don't race it."""
    from playwright.sync_api import expect as playwright_expect  # installed: the browser fixture made sure

    return playwright_expect(locator)


def translate(page, sentence):
    page.fill("#sentence", sentence)
    with page.expect_response("**/api/translate") as answer:
        page.click("#translate-form button[type=submit]")
    return answer.value


def test_translate_draws_the_map_and_hover_highlights_a_row(page):
    answer = translate(page, "Ein Hund läuft im Schnee.").json()
    heatmap = page.wait_for_selector("#heatmap svg")
    rows, cols = len(answer["target_tokens"]), len(answer["source_tokens"])  # cross-attention: target x source
    assert (heatmap.get_attribute("data-rows"), heatmap.get_attribute("data-cols")) == (str(rows), str(cols))
    expect(page.locator("#heatmap rect.cell")).to_have_count(rows * cols)
    expect(page.locator("#translation")).to_have_text(answer["translation"] or "(empty)")
    page.hover(f"#query-tokens .token[data-index='{rows - 1}']")
    highlighted = page.locator("#heatmap rect.cell.highlight")
    expect(highlighted).to_have_count(cols)
    assert {highlighted.nth(j).get_attribute("data-row") for j in range(cols)} == {str(rows - 1)}
    page.select_option("#map-kind", "encoder")
    expect(page.locator("#heatmap svg")).to_have_attribute("data-rows", str(cols))  # source x source
    page.select_option("#map-kind", "decoder")
    expect(page.locator("#heatmap svg")).to_have_attribute("data-cols", str(rows))


def test_bad_input_shows_an_error_and_the_server_keeps_serving(page):
    response = translate(page, "   ")
    assert response.status == 400
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("empty")
    assert translate(page, "Ein Mann.").status == 200
    expect(page.locator("#error")).to_be_hidden()


def test_next_token_probabilities_sum_to_one(page):
    page.click("#tabs button[data-view=next]")
    page.wait_for_selector("#next-bars .prob")
    probs = [float(p) for p in page.eval_on_selector_all("#next-bars .prob", "els => els.map(e => e.dataset.p)")]
    assert sum(probs) == pytest.approx(1.0, abs=1e-6)
    with page.expect_response("**/api/next_token"):
        page.fill("#top-k", "3")
    expect(page.locator("#next-bars .prob")).to_have_count(3)
    probs = [float(p) for p in page.eval_on_selector_all("#next-bars .prob", "els => els.map(e => e.dataset.p)")]
    assert sum(probs) == pytest.approx(1.0, abs=1e-6)


def test_the_language_model_next_token_view(page):
    page.select_option("#model", index=1)  # the GPT
    expect(page.locator("#view-translate .lm-note")).to_be_visible()
    expect(page.locator("#translate-form")).to_be_hidden()
    page.click("#tabs button[data-view=next]")
    expect(page.locator("#next-source")).to_be_hidden()
    page.fill("#next-prefix", "JULIET:")
    expect(page.locator("#next-context")).to_contain_text("J U L I E T :")  # the answer for this prompt
    probs = [float(p) for p in page.eval_on_selector_all("#next-bars .prob", "els => els.map(e => e.dataset.p)")]
    assert sum(probs) == pytest.approx(1.0, abs=1e-6)


def test_inside_one_head_and_the_beam_tree(page):
    page.click("#tabs button[data-view=head]")
    page.wait_for_selector("#head-steps table")
    keys = page.locator("#head-query option").count()  # cross-attention by default: queries are <s> + target
    assert keys >= 1
    weights = page.eval_on_selector_all("#head-steps td.weight", "els => els.map(e => parseFloat(e.textContent))")
    assert sum(weights) == pytest.approx(1.0, abs=0.01)
    page.wait_for_selector("#positional canvas")
    page.click("#tabs button[data-view=beam]")
    page.wait_for_selector("#beam-tree svg")
    assert page.locator("#beam-tree .beam-node").count() > 1
    assert page.locator("#beam-tree .beam-node.best").count() >= 2  # <s> and at least one token


def test_autograd_steps_through_backward(page):
    page.click("#tabs button[data-view=autograd]")
    page.wait_for_selector("#graph svg")
    nodes = page.locator("#graph .graph-node").count()
    assert nodes == 10  # sum((relu(x @ w + b) - y) ** 2): 6 ops and 4 leaves
    assert page.locator("#graph .graph-node.has-grad").count() == 0
    page.click("#step")
    expect(page.locator("#graph .graph-node.has-grad")).to_have_count(1)
    expect(page.locator("#grad-panel")).to_contain_text("grad = 1")
    page.click("#run-all")
    expect(page.locator("#graph .graph-node.has-grad")).to_have_count(nodes)
    expect(page.locator("#step-count")).to_contain_text(f"step {nodes} of {nodes}")
    page.fill("#expression", "x @")
    page.click("#autograd-form button[type=submit]")
    expect(page.locator("#error")).to_contain_text("expression")
