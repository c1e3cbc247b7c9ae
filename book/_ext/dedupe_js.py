"""Drop duplicate <script> entries from each page.

Jupyter Book 1.0.4 triggers sphinx-thebe's ``env-before-read-docs`` hook twice, which writes
``const THEBE_JS_URL = ...`` into every page twice (once with filename None, once with ""):
the second declaration is a JavaScript ``SyntaxError`` in the console. Keeping the first of
identical entries removes it.
"""


def _dedupe(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for js in context.get("script_files", []):
        attrs = getattr(js, "attributes", {}) or {}
        key = (getattr(js, "filename", js) or "", attrs.get("body"))  # None and "" alike
        if key not in seen:
            seen.add(key)
            kept.append(js)
    if "script_files" in context:
        context["script_files"][:] = kept


def setup(app):
    app.connect("html-page-context", _dedupe, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
