#!/usr/bin/python3
"""Writes the tabular fixtures of tests/data/tabular: a CSV and a JSONL file of good
rows with bad rows of many kinds mixed in, a schema file for the same columns, and
expected.json saying which line of each file is bad and why. Deterministic: run it
again and the files come out the same. Run: /usr/bin/python3 tests/data/make_fixtures.py"""
import json
import os
import random

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tabular")
GOOD = 320
COLORS = ["blue", "green", "red"]
CITIES = ["Lisbon", "Oslo", "Quito", "Hanoi", "Accra", "Perth", "Lima", "Riga", "Kyiv", "Dakar"]


def good_rows(rng):
    rows = []
    for i in range(GOOD):
        rows.append({
            "id": i,
            "age": round(rng.gauss(40, 12), 2),
            "income": round(rng.gauss(50000, 9000), 2),
            "color": rng.choice(COLORS),
            "city": rng.choice(CITIES) + " " + str(rng.randint(1, 999)),
            "label": rng.choice(["no", "yes"]),
        })
    return rows


def csv_cell(v):
    s = str(v)
    if any(c in s for c in ',"\n'):
        s = '"' + s.replace('"', '""') + '"'
    return s


def write_csv(rows, rng):
    cols = ["id", "age", "income", "color", "city", "label"]
    # (raw line bytes, reason); a reason of None is a good row
    bad = [
        (b'100,41.5,"unterminated,red,Oslo 1,yes', "malformed"),
        (b'101,"41.5"x,50000,red,Oslo 2,no', "malformed"),
        (b'102,41.5,50000,re"d,Oslo 3,no', "malformed"),
        (b"103,41.5,50000,red,Oslo 4", "wrong_field_count"),
        (b"104,41.5,50000,red,Oslo 5,no,extra", "wrong_field_count"),
        (b"105,forty,50000,red,Oslo 6,no", "wrong_type"),
        (b"106,,50000,red,Oslo 7,no", "missing_feature"),
        (b"107,41.5,nan,red,Oslo 8,no", "not_finite"),
        (b"108,41.5,-inf,red,Oslo 9,no", "not_finite"),
        (b"109,41.5,50000,purple,Oslo 10,no", "out_of_domain"),
        (b"110,41.5,900000000,red,Oslo 11,no", "out_of_distribution"),
        (b"111,41.5,50000,red,Os\xfflo,no", "bad_encoding"),
        (b"112,41.5,50000,red,Oslo 12,", "missing_feature"),
    ]
    lines = [",".join(cols).encode()]
    good = [",".join(csv_cell(r[c]) for c in cols).encode() for r in rows]
    # a good row with a quoted field holding a comma, a quote and a line break
    good[5] = b'5,33.1,48000,green,"Quito, ""old"" town\nnorth",yes'
    expected = []
    slots = sorted(rng.sample(range(10, len(good)), len(bad)))
    out = []
    bi = 0
    for i, g in enumerate(good):
        if bi < len(bad) and i == slots[bi]:
            out.append(bad[bi])
            bi += 1
        out.append((g, None))
    line_no = 2
    body = []
    for raw, reason in out:
        if reason:
            expected.append({"line": line_no, "reason": reason})
        body.append(raw)
        line_no += raw.count(b"\n") + 1
    data = b"\r\n".join(lines + body) + b"\r\n"
    with open(os.path.join(HERE, "rows.csv"), "wb") as f:
        f.write(data)
    return expected


def write_jsonl(rows, rng):
    bad = [
        ('{"id": 100, "age": 41.5, "income": 50000, "color": "red", "city": "Oslo 1", "label": "no"', "malformed"),
        ('[900, 41.5]', "malformed"),
        ('{"id": 101, "age": 41.5, "age": 42.0, "income": 50000, "color": "red", "city": "Oslo 2", "label": "no"}', "duplicate_key"),
        ('{"id": 102, "age": "old", "income": 50000, "color": "red", "city": "Oslo 3", "label": "no"}', "wrong_type"),
        ('{"id": 103, "income": 50000, "color": "red", "city": "Oslo 4", "label": "no"}', "missing_feature"),
        ('{"id": 104, "age": 41.5, "income": "NaN", "color": "red", "city": "Oslo 5", "label": "no"}', "not_finite"),
        ('{"id": 105, "age": 41.5, "income": 50000, "color": "mauve", "city": "Oslo 6", "label": "no"}', "out_of_domain"),
        ('{"id": 106, "age": 41.5, "income": -700000000, "color": "red", "city": "Oslo 7", "label": "no"}', "out_of_distribution"),
        ('{"id": 107, "age": 41.5, "income": 50000, "color": "red", "city": "Oslo 8", "label": "no", "scores": [1, 2]}', "wrong_shape"),
        ('{"id": 108, "age": [41.5], "income": 50000, "color": "red", "city": "Oslo 9", "label": "no"}', "wrong_shape"),
        ('{"id": 109, "age": 41.5, "income": 50000, "color": "red", "city": {"name": "Oslo"}, "label": "no"}', "wrong_type"),
    ]
    good = []
    for r in rows:
        r = dict(r)
        r["scores"] = [round(rng.random(), 3) for _ in range(3)]
        good.append(json.dumps(r))
    slots = sorted(rng.sample(range(10, len(good)), len(bad)))
    out, expected, bi = [], [], 0
    for i, g in enumerate(good):
        if bi < len(bad) and i == slots[bi]:
            out.append(bad[bi])
            bi += 1
        out.append((g, None))
    lines = []
    for n, (raw, reason) in enumerate(out, start=1):
        if reason:
            expected.append({"line": n, "reason": reason})
        lines.append(raw)
    with open(os.path.join(HERE, "rows.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return expected


def write_schema_cases():
    """A schema file and rows that only a given schema can catch."""
    schema = {
        "version": 1,
        "label": "label",
        "features": [
            {"name": "id", "type": "int", "shape": [], "required": True},
            {"name": "age", "type": "float", "shape": [], "required": True, "min": 0, "max": 130},
            {"name": "income", "type": "float", "shape": [], "required": False},
            {"name": "color", "type": "bytes", "shape": [], "required": True, "values": COLORS},
            {"name": "city", "type": "bytes", "shape": [], "required": True},
            {"name": "label", "type": "int", "shape": [], "required": True, "class_names": ["no", "yes"]},
        ],
    }
    with open(os.path.join(HERE, "schema.json"), "w") as f:
        json.dump(schema, f, indent=2)
        f.write("\n")
    rows = ['{"id": %d, "age": %.1f, "income": 1000, "color": "red", "city": "Oslo", "label": "%s"}'
            % (i, 20 + i % 50, "yes" if i % 2 else "no") for i in range(60)]
    bad = [
        ('{"id": 100, "age": 140.0, "color": "red", "city": "Oslo", "label": "no"}', "out_of_range"),
        ('{"id": 101, "age": 40.0, "color": "red", "city": "Oslo", "label": "maybe"}', "bad_label"),
        ('{"id": 102, "age": 40.0, "color": "red", "city": "Oslo", "label": 7}', "bad_label"),
        ('{"id": 103, "age": 40.0, "color": "red", "city": "Oslo", "label": "no", "zip": "0150"}', "unknown_feature"),
        ('{"id": 104, "age": 40.0, "color": "teal", "city": "Oslo", "label": "no"}', "out_of_domain"),
    ]
    lines = rows[:30] + [b[0] for b in bad] + rows[30:]
    expected = [{"line": 31 + i, "reason": b[1]} for i, b in enumerate(bad)]
    with open(os.path.join(HERE, "schema_rows.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return expected


def main():
    os.makedirs(HERE, exist_ok=True)
    rng = random.Random(20261129)
    rows = good_rows(rng)
    expected = {
        "good_rows": GOOD,
        "rows.csv": write_csv(rows, rng),
        "rows.jsonl": write_jsonl(rows, rng),
        "schema_rows.jsonl": write_schema_cases(),
    }
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
