#!/usr/bin/python3
"""Synthetic documents that teach a small model to retrieve across its whole context, for the
embedded model's training mix (docs/retrieval.md). Three kinds, in equal shares by count:

- passkey: the standard passkey prompt (the same task line, filler, key line and question as
  `kvscope passkey`), its filler either the standard sentences or training-book text, followed
  by the answer;
- needle: a training-book passage with one to four "The special magic number of NAME is N."
  sentences at random sentence boundaries, then every question with its answer (the format of
  `kvscope needle`);
- recurrence: a passage, other text, then the first passage again word for word;
- drill (only with --kinds drill): a run of random words from the books, then the same run
  again, and again: the plainest copying task, which small models need in quantity before
  they learn to look back at all.

Documents are 40 to 2,000 tokens long (about 3.4 characters a token), so every kind occurs at
every distance a 2,048-token context spans. Deterministic for a given --seed.

Usage: retrieval_corpus.py --seed S --chars N -o OUT.txt BOOK.txt...
"""
import argparse
import random
import re

TASK = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
        "I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NAMES = ["Elinor", "Marianne", "Edward", "Willoughby", "Brandon", "Lucy", "Emma", "Harriet", "Knightley", "Jane",
         "Frank", "Fanny", "Edmund", "Mary", "Henry", "Julia", "Maria", "Catherine", "Tilney", "Isabella",
         "Elizabeth", "Darcy", "Bingley", "Lydia", "Kitty", "Charlotte", "Collins", "Ishmael", "Ahab", "Starbuck",
         "Queequeg", "Stubb", "Flask", "Tashtego", "Daggoo", "Pip", "Peleg", "Bildad", "Anne", "Wentworth",
         "Louisa", "Benwick", "Walter", "Russell", "Clay", "Musgrove", "Ruth", "Naomi", "Boaz", "Esther",
         "Miriam", "Aaron", "Joseph", "Rachel", "Leah", "Jacob", "Samuel", "Hannah", "Deborah", "Gideon"]
CHARS_PER_TOKEN = 3.4


def sentences_of(text: str) -> list:
    flat = re.sub(r"\s+", " ", text)
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"\u201c])", flat) if len(s) > 1]


def passage(rng: random.Random, book: list, chars: int) -> list:
    start = rng.randrange(0, max(1, len(book) - 1))
    out, n = [], 0
    for s in book[start:]:
        if n >= chars:
            break
        out.append(s)
        n += len(s) + 1
    return out


def number(rng: random.Random, lo_digits: int, hi_digits: int) -> str:
    digits = rng.randint(lo_digits, hi_digits)
    return str(rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits - 1))


def passkey_doc(rng, books, chars):
    key = number(rng, 1, 7)
    filler_chars = max(0, chars - 250)
    if rng.random() < 0.5:
        repeats = filler_chars // (len(FILLER) + 1)
        filler = [FILLER] * repeats
    else:
        filler = passage(rng, rng.choice(books), filler_chars)
    cut = rng.randint(0, len(filler))
    lines = [TASK, " ".join(filler[:cut]), f"The pass key is {key}. Remember it. {key} is the pass key.",
             " ".join(filler[cut:]), f"What is the pass key? The pass key is {key}."]
    return "\n".join(lines)


def needle_doc(rng, books, chars):
    sents = passage(rng, rng.choice(books), max(0, chars - 200))
    needles = []
    for name in rng.sample(NAMES, rng.randint(1, 4)):
        value = number(rng, 2, 6)
        needles.append((name, value))
        sents.insert(rng.randint(0, len(sents)), f"The special magic number of {name} is {value}.")
    questions = [f"What is the special magic number of {n}? The special magic number of {n} is {v}."
                 for n, v in rng.sample(needles, len(needles))]
    return " ".join(sents) + "\n" + "\n".join(questions)


def recurrence_doc(rng, books, chars):
    first = passage(rng, rng.choice(books), rng.randint(100, 800))
    middle = passage(rng, rng.choice(books), max(0, chars - 2 * sum(len(s) + 1 for s in first)))
    return " ".join(first) + " " + " ".join(middle) + "\n" + " ".join(first)


def drill_doc(rng, books, chars):
    words = " ".join(passage(rng, rng.choice(books), 3000)).split()
    run = [rng.choice(words) for _ in range(rng.randint(8, 120))]
    if rng.random() < 0.3:  # digits too: keys are digits
        run = [str(rng.randint(0, 99999)) for _ in range(rng.randint(3, 30))]
    return "\n".join(" ".join(run) for _ in range(rng.randint(2, 3)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--chars", type=int, required=True, help="stop once this many characters are written")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--kinds", default="passkey,needle,recurrence",
                    help="comma-separated document kinds: passkey, needle, recurrence, drill")
    ap.add_argument("books", nargs="+")
    a = ap.parse_args()
    if a.chars <= 0:
        ap.error("--chars must be positive")
    rng = random.Random(a.seed)
    books = []
    for path in a.books:
        with open(path, encoding="utf-8") as f:
            books.append(sentences_of(f.read()))
    known = {"passkey": passkey_doc, "needle": needle_doc, "recurrence": recurrence_doc, "drill": drill_doc}
    names = a.kinds.split(",")
    if not names or any(n not in known for n in names) or len(set(names)) != len(names):
        ap.error(f"--kinds: a comma-separated list of distinct kinds from {', '.join(known)}")
    kinds = [known[n] for n in names]
    written = 0
    with open(a.out, "w", encoding="utf-8") as out:
        while written < a.chars:
            tokens = int(round(2 ** rng.uniform(5.3, 11)))  # log-uniform 40..2,048 tokens
            doc = kinds[rng.randrange(len(kinds))](rng, books, int(tokens * CHARS_PER_TOKEN))
            out.write(doc + "\n\n")
            written += len(doc) + 2


if __name__ == "__main__":
    main()
