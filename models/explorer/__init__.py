"""The Transformer explorer: a local web page that shows attention and autograd at work on our own models.

``python -m models.explorer -c runs/tiny`` (or ``ta-explore``) loads the checkpoints once and serves a page
at http://127.0.0.1:8000 whose views call the JSON endpoints under ``/api/``. Code map (one concern each):

    __main__.py     the command line: load the models, bind the address, run uvicorn
    app.py          the Starlette app: routes, request limits, JSON errors, the static page
    requests.py     reading and checking what a request asks for (the page is not trusted)
    sessions.py     a loaded model (the translator, or the GPT of models/gpt.py) and what the views need of
                    it; the lock that serialises model use
    decoding.py     translate while watching: attention maps and the beam tree of that one decoding pass
    head.py         inside one attention head: q, k, q.k, / sqrt(d_k), mask, softmax, weighted sum of values
    sampling.py     next-token probabilities under temperature, top-k and top-p
    expression.py   the autograd view's small grammar: a hand-written tokenizer and parser (no eval)
    backward_steps.py  evaluate a parsed expression, draw its graph, and record backward() node by node
    screenshots.py  PNGs of every view for the docs (Playwright driving the system's Chromium)
    static/         the page: HTML, CSS and plain JavaScript modules, no build step, nothing from the internet
"""
