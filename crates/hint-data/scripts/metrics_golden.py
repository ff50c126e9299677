#!/usr/bin/env python3
"""Golden data for hint-data's Super-NI metrics (ROUGE-L and exact match).

Writes crates/hint-data/tests/data/metrics_golden.json: per pair the ROUGE-L
F-measure of Google's `rouge-score` (RougeScorer(['rougeL'], use_stemmer=True),
max over references) and the Super-NI exact match (max over references), plus
the aggregates (mean x 100, and rounded to 4 decimals as Super-NI prints them).
The Rust test `tests/metrics_golden.rs` must reproduce every number.

How to run (from the repository root):

    python3 -m venv /root/.cache/hint/rouge-venv
    /root/.cache/hint/rouge-venv/bin/pip install rouge-score==0.1.2 nltk==3.10.4
    /root/.cache/hint/rouge-venv/bin/python crates/hint-data/scripts/metrics_golden.py

The pairs are generated from a fixed seed, so rerunning gives the same file.
"""

import json
import os
import random
import string
import sys

from rouge_score import rouge_scorer

SEED = 20240611
N_RANDOM = 240

# Super-NI's evaluation.py normalisation: lowercase, drop ASCII punctuation,
# collapse whitespace. Articles are NOT removed (unlike SQuAD).
def normalize_answer(s):
    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_punc(lower(s)))


def exact_match(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)


SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction, ground_truth):
    return SCORER.score(prediction=prediction, target=ground_truth)["rougeL"].fmeasure


# Hand-picked pairs: the data.md samples, stemming edge cases, punctuation,
# case, numbers, unicode, empty strings, multiple references.
FIXED = [
    ("The quick brown dog jumps on the log.", ["The quick brown fox jumps over the lazy dog"]),
    ("[33, 47, 268, 114]", ["[33, 47, 114, 268]"]),
    ("q, q, 6047, e, 4093", ["q, q, 6047, e, 4093, w, D"]),
    ("run running ran runners generous generalizations",
     ["running runs ran runner generously generalization"]),
    ("", [""]),
    ("", ["something"]),
    ("something", [""]),
    ("...", ["!!!"]),
    ("Hello, World!", ["hello world"]),
    ("hello   world", ["Hello World."]),
    ("The answer", ["answer"]),
    ("an apple", ["apple"]),
    ("uU", [""]),
    ("Yes", ["yes", "no"]),
    ("No.", ["yes", "no"]),
    ("maybe", ["yes", "no"]),
    ("caresses ponies ties caress cats", ["caress poni tie caress cat"]),
    ("feed agreed plastered bled motoring sing", ["fe agree plaster bled motor sing"]),
    ("conflated troubled sized hopping tanned falling hissing fizzed failing filing",
     ["conflate trouble size hop tan fall hiss fizz fail file"]),
    ("happy sky relational conditional rational valenci hesitanci",
     ["happi ski relate condition ration valence hesitance"]),
    ("digitizer conformabli radicalli differentli vileli analogousli",
     ["digitize conformable radical different vile analogous"]),
    ("vietnamization predication operator feudalism decisiveness hopefulness callousness",
     ["vietnamize predicate operate feudal decisive hopeful callous"]),
    ("formaliti sensitiviti sensibiliti triplicate formative formalize electriciti electrical",
     ["formal sensitive sensible triplic form formal electric electric"]),
    ("hopeful goodness revival allowance inference airliner gyroscopic adjustable defensible",
     ["hope good reviv allow infer airlin gyroscop adjust defens"]),
    ("irritant replacement adjustment dependent adoption homologou communism activate",
     ["irrit replac adjust depend adopt homolog commun activ"]),
    ("angulariti homologous effective bowdlerize probate rate cease controll roll",
     ["angular homolog effect bowdler probat rate ceas control roll"]),
    ("dying lying tying news innings outings cannings howe proceed exceed succeed",
     ["die lie tie news inning outing canning howe proceed exceed succeed"]),
    ("generalization generalizations generality generous generously",
     ["general generous generously"]),
    ("Café naïve résumé", ["cafe naive resume"]),
    ("北京是中国的首都", ["北京是中国的首都"]),
    ("Über München straße", ["uber munchen strasse"]),
    ("\u212a is a kelvin", ["k is a kelvin"]),
    ("İstanbul", ["istanbul"]),
    ("ǅungla", ["dzungla"]),
    ("2024-05-01", ["2024 05 01"]),
    ("a, 34, f.", ["a, 34, f"]),
    ("5191, 9389, 9907, 8877, N, 6453", ["5191, 9389, 9907, 8877, N, 6453."]),
    ("the the the", ["the"]),
    ("A b c d e", ["e d c b a"]),
    ("\t  spaced\n\nout  ", ["spaced out"]),
    ("it's", ["its"]),
    ("don't stop", ["dont stop"]),
    ("true", ["True", "TRUE", "false"]),
    ("Positive", ["positive"]),
    ("Mixed CASE Words", ["mixed case words", "other"]),
    ("x" * 50, ["x" * 50]),
    ("sky skies skied skying", ["sky sky sky sky"]),
    ("agreement agreed agree agreeing", ["agre agre agre agre"]),
    ("ions ionization ionized", ["ion ion ion"]),
    ("¡Hola! ¿Qué tal?", ["hola que tal"]),
    ("emoji 😀 test", ["emoji test"]),
    ("tab\tseparated\tvalues", ["tab separated values"]),
    ("under_score and-hyphen", ["under score and hyphen"]),
    ("3.14159", ["3 14159"]),
    ("$100 & 50%", ["100 50"]),
]

WORDS = (
    "the a an of to and in is was it for on with as by at from that this be are were "
    "running runs ran runner generously generalization happiness happy hopping hoped "
    "cats cat dogs dog connection connected connecting relational conditional "
    "sing singing sang abilities ability agreed agreement studies studying study "
    "quickly quick brown fox jumps jumped lazy over under list sort sorted reverse "
    "reversed numbers number elements element first last output input example "
    "apple Apple APPLE banana Banana cherries cherry nationalization national "
    "organization organize organizes organized meeting meetings Meeting "
    "positive negative neutral yes no true false maybe"
).split()
PUNCT = [".", ",", "!", "?", ";", ":", "'", '"', "-", "(", ")", "[", "]", "...", "--"]
UNICODE = ["é", "ü", "ß", "中文", "日本", "Ж", "ñ", "ø", "→", "’", "“", "”", "\u00a0"]


def random_text(rng):
    kind = rng.random()
    if kind < 0.05:
        return ""
    if kind < 0.25:
        # number lists as the algorithmic Super-NI tasks print them
        n = rng.randint(0, 8)
        nums = [str(rng.randint(0, 300)) for _ in range(n)]
        if rng.random() < 0.5:
            return "[" + ", ".join(nums) + "]"
        return ", ".join(nums)
    n = rng.randint(1, 12)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.75:
            w = rng.choice(WORDS)
            c = rng.random()
            if c < 0.1:
                w = w.upper()
            elif c < 0.2:
                w = w.capitalize()
            out.append(w)
        elif r < 0.85:
            out.append(rng.choice(PUNCT))
        elif r < 0.93:
            out.append(rng.choice(UNICODE) + rng.choice(WORDS))
        else:
            out.append(str(rng.randint(0, 9999)))
    sep = rng.choice([" ", " ", " ", "  ", "\t", "\n"])
    text = sep.join(out)
    if rng.random() < 0.3:
        text += rng.choice(PUNCT)
    return text


def perturb(rng, text):
    """A prediction close to a reference: case, punctuation, a dropped or swapped word."""
    words = text.split()
    r = rng.random()
    if r < 0.2:
        return text.upper()
    if r < 0.4:
        return text + rng.choice(PUNCT)
    if r < 0.6 and words:
        del words[rng.randrange(len(words))]
        return " ".join(words)
    if r < 0.8 and len(words) > 1:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words)
    return random_text(rng)


def main():
    rng = random.Random(SEED)
    pairs = list(FIXED)
    for _ in range(N_RANDOM):
        n_refs = rng.choice([1, 1, 1, 2, 3])
        refs = [random_text(rng) for _ in range(n_refs)]
        if rng.random() < 0.6:
            pred = perturb(rng, rng.choice(refs))
        else:
            pred = random_text(rng)
        pairs.append((pred, refs))

    records = []
    for pred, refs in pairs:
        rl = max(rouge_l(pred, r) for r in refs)
        em = max(float(exact_match(pred, r)) for r in refs)
        records.append({"prediction": pred, "references": refs, "rouge_l": rl, "exact_match": em})

    n = len(records)
    agg_rl = 100.0 * sum(r["rouge_l"] for r in records) / n
    agg_em = 100.0 * sum(r["exact_match"] for r in records) / n
    out = {
        "generator": "crates/hint-data/scripts/metrics_golden.py",
        "rouge_score_version": "0.1.2",
        "seed": SEED,
        "pairs": records,
        "aggregate": {
            "rouge_l": agg_rl,
            "exact_match": agg_em,
            "rouge_l_rounded": round(agg_rl, 4),
            "exact_match_rounded": round(agg_em, 4),
        },
    }
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "tests", "data", "metrics_golden.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {n} pairs to {os.path.normpath(path)}", file=sys.stderr)


if __name__ == "__main__":
    main()
