"""Optional machine translation: a local MarianMT zh->en model translates what the sound vocabulary could not.

Active only when settings["marian.model_dir"] names a saved MarianMTModel + MarianTokenizer directory.
It wraps the other ``translate_query`` implementations: the vocabulary stays first for sound terms,
and each part they report as untranslated goes through the model and moves into ``texts``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soundsift import QueryTranslation, hookimpl

TRANSLATOR = "marian"
MAX_TEXTS = 5
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


class MarianModelMissing(RuntimeError):
    """settings["marian.model_dir"] does not hold a loadable Marian model."""


@dataclass
class MarianTranslator:
    """A loaded MarianMT model and its tokenizer on one device."""

    model: Any
    tokenizer: Any
    device: str
    max_new_tokens: int = 64

    def translate(self, parts: list[str]) -> list[str]:
        """English for each Chinese part (greedy decoding, deterministic); CJK left in the output is dropped."""
        import torch

        batch = self.tokenizer(parts, return_tensors="pt", padding=True, truncation=True).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**batch, num_beams=1, do_sample=False, max_new_tokens=self.max_new_tokens)
        decoded = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [" ".join(_CJK.sub(" ", text).split()) for text in decoded]


_loaded: dict[tuple[str, str, int], MarianTranslator] = {}
_lock = threading.Lock()


def _device(settings: Mapping[str, Any]) -> str:
    wanted = str(settings.get("marian.device") or settings.get("device") or "cpu")
    if wanted == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


def load_translator(model_dir: str | Path, device: str = "cpu", max_new_tokens: int = 64) -> MarianTranslator:
    """Load (once per directory and device) a Marian model saved with ``save_pretrained``."""
    path = Path(model_dir).expanduser()
    key = (str(path.resolve()), device, max_new_tokens)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        if not (path / "config.json").is_file():
            raise MarianModelMissing(
                f"marian.model_dir={str(model_dir)!r} holds no Marian model (no config.json); save one there with "
                "MarianMTModel.save_pretrained and MarianTokenizer.save_pretrained (e.g. Helsinki-NLP/opus-mt-zh-en), "
                "or unset marian.model_dir"
            )
        from transformers import MarianMTModel, MarianTokenizer

        tokenizer = MarianTokenizer.from_pretrained(str(path))
        model = MarianMTModel.from_pretrained(str(path)).to(device).eval()
        translator = MarianTranslator(model, tokenizer, device, max_new_tokens)
        _loaded[key] = translator
        return translator


def fill_untranslated(result: QueryTranslation, translator: MarianTranslator) -> QueryTranslation:
    """Translate ``result.untranslated`` with the model; parts that come back as English move into texts."""
    parts = list(result.untranslated)
    english = translator.translate(parts)
    still: list[str] = []
    texts = list(result.texts)
    for part, text in zip(parts, english):
        if not text:
            still.append(part)
            continue
        if len(texts) >= MAX_TEXTS:
            texts = texts[: MAX_TEXTS - 1]
        if text.lower() not in (t.lower() for t in texts):
            texts.append(text)
    name = f"{result.translator}+{TRANSLATOR}" if result.translator else TRANSLATOR
    return QueryTranslation(texts=texts, negatives=list(result.negatives), untranslated=still, translator=name)


@hookimpl(wrapper=True)
def translate_query(text: str, settings: Mapping[str, Any]):
    """Wrap the other translators: send what they left untranslated (or a whole CJK query) through Marian."""
    result = yield
    model_dir = settings.get("marian.model_dir")
    if not model_dir:
        return result
    if result is None:
        if not text or not _CJK.search(text):
            return None
        result = QueryTranslation(texts=[], untranslated=[text.strip()], translator="")
    if not result.untranslated:
        return result
    max_new_tokens = int(settings.get("marian.max_new_tokens") or 64)
    translator = load_translator(model_dir, _device(settings), max_new_tokens)
    return fill_untranslated(result, translator)
