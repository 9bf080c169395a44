"""Reference BG/NBD + Gamma-Gamma numbers from the independent `lifetimes` package.

Reads orders.csv (customer_id,date,amount_minor) next to this file and writes
reference.json, which the Rust tests compare against. Run from this directory:

    python3 -m venv /tmp/ltvenv && /tmp/ltvenv/bin/pip install -r requirements.txt
    /tmp/ltvenv/bin/python reference.py

What lifetimes 0.11.3 computes (read from its source; x = frequency,
t_x = recency, T = age, all in days; m = monetary value):

BG/NBD per-customer log-likelihood (fitters/beta_geo_fitter.py):
    A1 = lnG(r+x) - lnG(r) + r ln(alpha)
    A2 = lnG(a+b) + lnG(b+x) - lnG(b) - lnG(a+b+x)
    A3 = -(r+x) ln(alpha+T)
    A4 = ln(a) - ln(b + max(x,1) - 1) - (r+x) ln(alpha+t_x)
    LL = A1 + A2 + ln(exp(A3) + [x>0] exp(A4))    (evaluated with a max-shift)
  fit() minimises -sum(w*LL)/sum(w) + penalizer*sum(params^2) over log-params,
  with time rescaled by 1/max(T) (alpha is divided back afterwards), BFGS from
  log-params 0.1. Its stored _negative_log_likelihood_ is in those scaled units
  (it differs by mean(x)*ln(max T)), so we re-evaluate the LL in days below.
P(alive): 1 if x == 0, else 1 / (1 + exp(D)),
    D = (r+x) ln((alpha+T)/(alpha+t_x)) + ln(a / (b + max(x,1) - 1))
E[purchases in (T, T+t]]:
    (a+b+x-1)/(a-1) * [1 - 2F1(r+x, b+x; a+b+x-1; z) * ((alpha+T)/(alpha+T+t))^(r+x)]
    / [1 + [x>0] * a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x)],   z = t/(alpha+T+t)
  (scipy.special.hyp2f1; if ln 2F1 is inf it uses the Euler transform
   2F1(c-a, c-b; c; z) (1-z)^(c-a-b) instead).
Gamma-Gamma per-customer log-likelihood (fitters/gamma_gamma_fitter.py), x > 0:
    lnG(px+q) - lnG(px) - lnG(q) + q ln v + (px-1) ln m + px ln x - (px+q) ln(xm+v)
  minimised as -mean + penalizer*sum(params^2) over log-params, BFGS from 0.1,
  no rescaling of m (so v is in cents here).
E[order value]: (1-w) * v p/(q-1) + w m,  w = p x / (p x + q - 1); for x = 0
  that is the population mean v p/(q-1).
CLV (utils._customer_lifetime_value, freq='D' -> 30 days per "month"):
    sum_{k=1..12} E[value] * (E[X(30k)] - E[X(30k-30)]) / 1.01^k
  with E[value] = the conditional expected average profit above, E[X(0)] = 0.
  It covers 12 steps of 30 days (360 days): the key is "clv_12_months".
"""
import json
import os
import time

import numpy as np
import pandas as pd
import lifetimes
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import ConvergenceError, summary_data_from_transaction_data

AS_OF = "2026-06-30"  # observation_period_end
HERE = os.path.dirname(os.path.abspath(__file__))
# BFGS stops when the max |gradient| of the mean NLL (w.r.t. log-params) is < tol.
# lifetimes defaults to 1e-7; we want a tightly converged optimum, but BFGS can
# stop with "precision loss" (lifetimes then prints scipy's result and raises
# ConvergenceError), so fall back step by step; the tol used goes into the JSON.
TOLS = (1e-10, 1e-9, 1e-8, 1e-7)


def fit_tight(fitter, *args):
    for tol in TOLS:
        try:
            return fitter.fit(*args, tol=tol), tol
        except ConvergenceError:
            pass
    raise RuntimeError("%s did not converge for tol in %s" % (type(fitter).__name__, TOLS))


def main():
    started = time.time()
    orders = pd.read_csv(os.path.join(HERE, "orders.csv"))
    # lifetimes buckets dates into freq='D' periods and, with monetary_value_col,
    # sums amount_minor within each (customer, day) (`period_groupby.sum()` in
    # utils._find_first_transactions): a day is one purchase. frequency = distinct
    # days - 1, monetary_value = mean of the daily sums after the first day (0 if
    # none). Orders after AS_OF are dropped. All columns come back as float64.
    summary = summary_data_from_transaction_data(
        orders, "customer_id", "date", monetary_value_col="amount_minor",
        observation_period_end=AS_OF, freq="D",
    ).sort_index()
    # NB: summary.T would be the transpose, hence summary["T"] everywhere.
    freq, rec, age, mon = (summary[c] for c in ("frequency", "recency", "T", "monetary_value"))

    bgf, bg_tol = fit_tight(BetaGeoFitter(penalizer_coef=0.0), freq, rec, age)
    r, alpha, a, b = (float(bgf.params_[k]) for k in ("r", "alpha", "a", "b"))
    # Same function lifetimes minimises, but on unscaled days, without penalizer,
    # sign flipped: the mean log-likelihood per customer.
    bg_ll = -BetaGeoFitter._negative_log_likelihood(
        np.log([r, alpha, a, b]), freq.values.astype(int), rec.values, age.values,
        np.ones(len(summary)), 0.0)

    rep = summary[freq > 0]
    ggf, gg_tol = fit_tight(GammaGammaFitter(penalizer_coef=0.0), rep["frequency"], rep["monetary_value"])
    p, q, v = (float(ggf.params_[k]) for k in ("p", "q", "v"))
    gg_ll = -GammaGammaFitter._negative_log_likelihood(
        np.log([p, q, v]), rep["frequency"].values, rep["monetary_value"].values,
        np.ones(len(rep)), 0.0)

    p_alive = bgf.conditional_probability_alive(freq.values, rec.values, age.values)
    exp_90 = bgf.conditional_expected_number_of_purchases_up_to_time(90, freq.values, rec.values, age.values)
    exp_value = ggf.conditional_expected_average_profit(freq.values, mon.values)
    # customer_lifetime_value needs Series (it indexes its result by frequency.index).
    clv = ggf.customer_lifetime_value(bgf, freq, rec, age, mon, time=12, discount_rate=0.01, freq="D")

    def whole(value):
        # With freq='D' frequency/recency/T are whole numbers; write them as JSON
        # integers so they deserialize into integer or float fields alike.
        assert float(value).is_integer(), value
        return int(value)

    predictions = [
        {
            "customer_id": int(cid),
            "frequency": whole(freq.iloc[i]),
            "recency": whole(rec.iloc[i]),
            "T": whole(age.iloc[i]),
            "monetary_value": float(mon.iloc[i]),
            "p_alive": float(p_alive[i]),
            "expected_purchases_90": float(exp_90[i]),
            "expected_order_value": float(exp_value[i]),
            "clv_12_months": float(clv.iloc[i]),
        }
        for i, cid in enumerate(summary.index)
    ]
    out = {
        "as_of": AS_OF,
        "customers": len(summary),
        "lifetimes_version": lifetimes.__version__,
        "bgnbd": {"r": r, "alpha": alpha, "a": a, "b": b,
                  "mean_log_likelihood": float(bg_ll), "fit_tol": bg_tol},
        "gamma_gamma": {"p": p, "q": q, "v": v, "customers": len(rep),
                        "mean_log_likelihood": float(gg_ll), "fit_tol": gg_tol},
        "predictions": predictions,
    }
    # json writes floats with repr(), i.e. the shortest string that round-trips
    # exactly; allow_nan=False fails loudly instead of writing invalid JSON.
    with open(os.path.join(HERE, "reference.json"), "w") as fh:
        json.dump(out, fh, indent=1, allow_nan=False)
        fh.write("\n")
    print("%d customers, %d orders -> reference.json in %.2fs"
          % (len(summary), len(orders), time.time() - started))


if __name__ == "__main__":
    main()
