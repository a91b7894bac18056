"""A Sphinx extension for the book build (`sphinx.extra_extensions` in _config.yml).

Jupyter Book 1 with Sphinx 7.4 puts some inline scripts on every page twice: those that
sphinx-thebe and sphinx-togglebutton add after the builder is initialised arrive once with filename
None and once with filename "", which Sphinx does not see as equal. A repeated `const THEBE_JS_URL = ...` is a JavaScript error in the
browser console, so each page keeps the first copy of every identical script and stylesheet.
"""

from __future__ import annotations


def _key(asset) -> tuple:
    attrs = getattr(asset, "attributes", None) or {}
    return getattr(asset, "filename", asset) or "", tuple(sorted((k, str(v)) for k, v in attrs.items()))


def dedupe_assets(app, pagename, templatename, context, doctree) -> None:
    for name in ("script_files", "css_files"):
        if name in context:
            seen, kept = set(), []
            for asset in context[name]:
                if _key(asset) not in seen:
                    seen.add(_key(asset))
                    kept.append(asset)
            context[name][:] = kept  # in place: handlers after this one (MathJax's) append to the same list


def setup(app):
    app.connect("html-page-context", dedupe_assets, priority=100)  # early: a handler that returns a value stops the later ones
    return {"parallel_read_safe": True, "parallel_write_safe": True}
