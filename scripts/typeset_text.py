#!/usr/bin/python3
"""Re-typesets a plain-ASCII Gutenberg-style book the way modern e-texts print it: paragraphs on
one line, curly quotes and apostrophes, em dashes. Part of the embedded model's training text
goes through it so that its tokenizer gets pieces for typographic punctuation and the model
sees them in use (held-out texts such as Frankenstein are printed this way).

Usage: typeset_text.py IN.txt OUT.txt
"""
import re
import sys


def typeset(text: str) -> str:
    paragraphs = [" ".join(line.strip() for line in block.splitlines()) for block in re.split(r"\n\s*\n", text)]
    out = []
    for p in paragraphs:
        if not p:
            continue
        p = p.replace("--", "\u2014")
        # A double quote opens after the start, a space, an opening bracket or a dash; else it closes.
        p = re.sub(r'(^|[\s(\[\u2014])"', "\\1\u201c", p)
        p = p.replace('"', "\u201d")
        # A single quote between letters or after a letter/digit is an apostrophe (or closes);
        # at the start of a word it opens, except for the elisions every book uses ('tis, 'twas).
        p = re.sub(r"(^|[\s(\[\u2014\u201c])'(?!(?:tis|twas|twere|em|em\b)\b)", "\\1\u2018", p, flags=re.IGNORECASE)
        p = p.replace("'", "\u2019")
        out.append(p)
    return "\n\n".join(out) + "\n"


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: typeset_text.py IN.txt OUT.txt")
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write(typeset(text))


if __name__ == "__main__":
    main()
