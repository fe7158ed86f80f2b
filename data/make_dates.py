"""Generate the course's checkable task: rewrite a date written in some human format as ISO 8601.

Run `python data/make_dates.py` to regenerate `data/dates.jsonl` (alpaca format).
The seed is fixed, so the file is the same on every machine; raise `--n` to grow it
(the first records stay the same because each record only draws from the shared generator in order).
"""
import argparse, datetime as dt, json, random
from pathlib import Path

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
INSTRUCTION = "Rewrite the date in ISO 8601 format (YYYY-MM-DD). Answer with the date only."

def ordinal(n):
    "1 -> '1st', 22 -> '22nd', 13 -> '13th'"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"

def spell(d: dt.date, style: int) -> str:
    "Write `d` in one of the human styles the task uses."
    m, mon, wd = MONTHS[d.month - 1], MONTHS[d.month - 1][:3], d.strftime("%A")
    styles = [
        f"{m} {d.day}, {d.year}",              # March 5, 2021
        f"{d.day} {m} {d.year}",               # 5 March 2021
        f"{mon} {d.day} {d.year}",             # Mar 5 2021
        f"{m} {ordinal(d.day)}, {d.year}",     # March 5th, 2021
        f"the {ordinal(d.day)} of {m} {d.year}",
        f"{wd}, {m} {d.day}, {d.year}",        # Friday, March 5, 2021
        f"{d.day}-{mon}-{d.year}",             # 5-Mar-2021
        f"{d.year} {m} {d.day}",               # 2021 March 5
        f"{mon}. {d.day}, {d.year}",           # Mar. 5, 2021
        f"{m.upper()} {d.day} {d.year}",       # MARCH 5 2021
        f"{d.year}/{d.month}/{d.day}",         # 2021/3/5 (year first, so unambiguous)
        f"{ordinal(d.day)} {m} {d.year}",      # 5th March 2021
    ]
    return styles[style]

def make(n: int, seed: int = 2024):
    "`n` alpaca records with distinct inputs, drawn with a fixed seed."
    rng, seen, out = random.Random(seed), set(), []
    start, span = dt.date(1950, 1, 1), (dt.date(2049, 12, 31) - dt.date(1950, 1, 1)).days
    while len(out) < n:
        d = start + dt.timedelta(days=rng.randrange(span + 1))
        text = spell(d, rng.randrange(12))
        if text in seen: continue
        seen.add(text)
        out.append({"instruction": INSTRUCTION, "input": text, "output": d.isoformat()})
    return out

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1200, help="number of records")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--out", default=str(Path(__file__).with_name("dates.jsonl")))
    a = ap.parse_args()
    recs = make(a.n, a.seed)
    with open(a.out, "w", encoding="utf-8") as f:
        for r in recs: f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(recs)} records to {a.out}")
