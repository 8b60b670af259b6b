#!/usr/bin/python3
"""Click logs from a known latent-factor model, and the Bayes-optimal AUC of its test rows.

The truth: every user u has a bias b_u and a vector p_u, every item i a bias b_i and a
vector q_i (dimension --dim, normal with the given scales), every device c an offset o_c;
a row's click probability is

    P(click | u, i, c) = sigmoid(b0 + b_u + b_i + o_c + p_u . q_i)

Rows draw the user uniformly, the item by a Zipf-like popularity (weight 1/(rank+10)),
the device from fixed shares, and the click from that probability. No model can rank
the test rows better than the true probabilities do, so their AUC is the Bayes-optimal
AUC; a trained model is measured against it.

Writes, into --out:
  clicks.csv   user,item,device,clicked (train and validation rows)
  test.csv     the same columns, the held-out rows
  schema.json  the slipway schema: every user, item and device id is a categorical value
               (more than prep's inference would take as a domain), clicked the label
  truth.json   the settings, the click rate, and bayes_auc of test.csv's rows

Then: slipway prep --input csv:OUT/clicks.csv --test-input OUT/test.csv
      --schema OUT/schema.json --split train=0.9,val=0.1 --out DS
"""

import argparse
import json
import os
import sys

import numpy as np

DEVICES = ["desktop", "mobile", "tablet"]
DEVICE_SHARE = [0.35, 0.55, 0.10]
DEVICE_OFFSET = [0.3, 0.0, -0.4]


def auc(scores, labels):
    """Area under the ROC curve by the rank-sum statistic, tied scores sharing their
    average rank (rows of the same user, item and device have equal probabilities)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        raise ValueError("AUC needs both classes")
    _, inv, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0  # 1-based average rank of each distinct score
    ranks = avg_rank[inv]
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--dim", type=int, default=4, help="latent dimension d")
    ap.add_argument("--rows", type=int, default=1000000, help="rows of clicks.csv")
    ap.add_argument("--test-rows", type=int, default=50000, help="rows of test.csv")
    ap.add_argument("--factor-scale", type=float, default=0.55, help="std of each latent coordinate")
    ap.add_argument("--bias-scale", type=float, default=0.6, help="std of the user and item biases")
    ap.add_argument("--global-bias", type=float, default=-1.0, help="b0")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.users < 2 or a.items < 2 or a.dim < 1 or a.rows < 10 or a.test_rows < 10:
        sys.exit("make_clicks: --users and --items need 2 or more, --dim 1 or more, --rows and --test-rows 10 or more")

    rng = np.random.default_rng(a.seed)
    user_bias = rng.normal(0, a.bias_scale, a.users)
    item_bias = rng.normal(0, a.bias_scale, a.items)
    user_vec = rng.normal(0, a.factor_scale, (a.users, a.dim))
    item_vec = rng.normal(0, a.factor_scale, (a.items, a.dim))
    popularity = 1.0 / (np.arange(a.items) + 10.0)
    popularity = popularity[rng.permutation(a.items)]
    popularity /= popularity.sum()

    def draw(n):
        u = rng.integers(0, a.users, n)
        i = rng.choice(a.items, n, p=popularity)
        c = rng.choice(len(DEVICES), n, p=DEVICE_SHARE)
        logit = (a.global_bias + user_bias[u] + item_bias[i] + np.asarray(DEVICE_OFFSET)[c]
                 + np.einsum("nd,nd->n", user_vec[u], item_vec[i]))
        p = 1.0 / (1.0 + np.exp(-logit))
        y = (rng.random(n) < p).astype(np.int64)
        return u, i, c, p, y

    uw, iw = len(str(a.users - 1)), len(str(a.items - 1))
    user_ids = [f"u{k:0{uw}d}" for k in range(a.users)]
    item_ids = [f"i{k:0{iw}d}" for k in range(a.items)]

    def write(path, u, i, c, y):
        with open(path + ".tmp", "w") as f:
            f.write("user,item,device,clicked\n")
            f.writelines(f"{user_ids[a_]},{item_ids[b]},{DEVICES[d]},{e}\n" for a_, b, d, e in zip(u, i, c, y))
        os.replace(path + ".tmp", path)

    os.makedirs(a.out, exist_ok=True)
    tr = draw(a.rows)
    te = draw(a.test_rows)
    write(os.path.join(a.out, "clicks.csv"), tr[0], tr[1], tr[2], tr[4])
    write(os.path.join(a.out, "test.csv"), te[0], te[1], te[2], te[4])

    def cat(name, values):
        return {"name": name, "type": "bytes", "shape": [], "required": True, "values": values}

    schema = {"version": 1, "label": "clicked",
              "features": [cat("user", user_ids), cat("item", item_ids), cat("device", DEVICES),
                           {"name": "clicked", "type": "int", "shape": [], "required": True,
                            "class_names": ["0", "1"]}]}
    with open(os.path.join(a.out, "schema.json"), "w") as f:
        json.dump(schema, f, indent=1)
    truth = {"settings": vars(a), "click_rate": float(tr[4].mean()), "test_click_rate": float(te[4].mean()),
             "bayes_auc": auc(te[3], te[4]),
             "bayes_log_loss": float(-np.mean(te[4] * np.log(te[3]) + (1 - te[4]) * np.log(1 - te[3])))}
    with open(os.path.join(a.out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    print(json.dumps({k: truth[k] for k in ("click_rate", "bayes_auc", "bayes_log_loss")}))


if __name__ == "__main__":
    main()
