"""An executor plugin: ``execute(input)`` counts the words of a text.

The input is a string, or an object with a ``text`` string::

    $ tether plugins exec examples/plugins/word-count-plugin --input '"to be or not to be"'
    {
      "words": 6,
      "unique": 4,
      "top": [
        {"word": "to", "count": 2}, ...
      ]
    }

Anything else is refused with a ``ValueError`` that says what was expected.
"""

from __future__ import annotations

import re
from collections import Counter

import tether

_WORD = re.compile(r"\w+(?:['\u2019-]\w+)*")


class WordCountPlugin(tether.Plugin):
    def initialize(self, ctx: tether.PluginContext) -> None:
        super().initialize(ctx)
        self.top = int(ctx.plugin_config["top"])
        self.ignore_case = bool(ctx.plugin_config["ignore_case"])

    def execute(self, data: object) -> dict[str, object]:
        text = _text_of(data)
        words = _WORD.findall(text.casefold() if self.ignore_case else text)
        counts = Counter(words)
        return {
            "words": len(words),
            "unique": len(counts),
            "top": [{"word": w, "count": n} for w, n in counts.most_common(self.top)],
        }


def _text_of(data: object) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        return str(data["text"])
    raise ValueError(
        f'expected a string or an object like {{"text": "..."}}, got {type(data).__name__}'
    )
