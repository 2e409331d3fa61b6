"""Sphinx extension: drop repeated <script> entries from every page.

sphinx-thebe registers its inline configuration script on every read phase, and Jupyter Book 1
runs more than one, so each page declared ``const THEBE_JS_URL`` twice and the browser reported
"Identifier 'THEBE_JS_URL' has already been declared" (the copies differ only in an empty file
name, ``None`` vs ``""``). Keeping the first copy of each script fixes it.
"""

from __future__ import annotations


def _dedupe(app, pagename, templatename, context, doctree) -> None:
    seen, kept = set(), []
    for js in context.get("script_files", []):
        key = (getattr(js, "filename", str(js)) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
