"""The gradio web app (`lusd serve`): the page in `app`, the edit logic in `editing`.

This package sits on top of the engine: it imports the pipeline, images and
licensing modules; nothing outside `lusd.web` (except `lusd serve`) imports it.
"""

from __future__ import annotations

from lusd.web.editing import AppSettings, Editor, SessionResult

__all__ = ["AppSettings", "SessionResult", "Editor"]
