"""A Hugging Face `CLIPTokenizer`'s files written offline from open_clip's bundled BPE merges."""
from __future__ import annotations

import gzip
import json
from pathlib import Path


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP byte-level alphabet: each of the 256 bytes as a printable unicode character.

    Printable Latin-1 bytes stand for themselves; the other bytes (controls, space, ...) take the
    code points 256, 257, ... in byte order. Listed in the order CLIP's vocabulary uses: the
    printable bytes first, then the others.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in set(printable)]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def open_clip_tokenizer_files(dest: str | Path) -> tuple[Path, Path]:
    """Write `vocab.json` and `merges.txt` into `dest` from open_clip's bundled BPE merges.

    CLIP's vocabulary (Radford et al. 2021) is: the 256 byte symbols, the same with the end-of-word
    mark `</w>`, one token per merge rule (the first 48894 rules of the file, in order), then
    `<|startoftext|>` and `<|endoftext|>` (ids 49406, 49407). `transformers.CLIPTokenizer` built
    from these files gives the same ids as open_clip's tokenizer.
    """
    import open_clip.tokenizer as oc_tok

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with gzip.open(oc_tok.default_bpe(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    n_merges = 49152 - 256 - 2  # CLIP's vocabulary is 49408 = 2*256 + merges + 2 specials
    rules = [line for line in lines[1:1 + n_merges]]  # line 0 is the file's version header
    alphabet = _byte_alphabet()
    tokens = alphabet + [s + "</w>" for s in alphabet] + ["".join(r.split()) for r in rules]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise RuntimeError("open_clip's BPE file produced duplicate tokens; unexpected format")
    vocab_path, merges_path = dest / "vocab.json", dest / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(rules) + "\n", encoding="utf-8")
    return vocab_path, merges_path
