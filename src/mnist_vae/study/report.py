"""The study's report: findings computed from the table, written as Markdown and as self-contained HTML."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from ..io import atomic_write_text

FIGURES = (
    ("reconstructions.png", "Reconstructions (top: test digits, bottom: decoded μ)"),
    ("loss_curves.png", "Loss curves"),
    ("samples.png", "Samples from N(0, I)"),
    ("samples_over_training.png", "The same z decoded over training"),
)

#: (key, header, format) of the report table's columns, in order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("parameters", "parameters", "{:,d}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("images_per_second", "img/s", "{:.0f}"),
    ("elbo", "test −ELBO", "{:.2f}"),
    ("recon", "recon", "{:.2f}"),
    ("kl", "KL", "{:.2f}"),
    ("nll", "NLL", "{:.2f}"),
    ("active_units", "active units", "{:d}"),
    ("probe_accuracy", "probe acc.", "{:.3f}"),
    ("coverage", "coverage", "{:d}"),
    ("blank_rate", "blank rate", "{:.3f}"),
    ("frechet", "Fréchet", "{:.2f}"),
)


# --- findings ------------------------------------------------------------------------------------


def _epochs_to(history: list[float], target: float) -> int | None:
    return next((i + 1 for i, v in enumerate(history) if v <= target), None)


def findings(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(question, answer) pairs computed from the table; "not measured" when a configuration is missing."""
    by = {r["config"]: r for r in rows}
    out: list[tuple[str, str]] = []

    def need(*names: str) -> str | None:
        missing = [n for n in names if n not in by]
        return f"not measured: the study does not include {', '.join(missing)}." if missing else None

    q = "Does dropout hurt?"
    ans = need("dropout", "baseline")
    if ans is None:
        d, b = by["dropout"], by["baseline"]
        worse = d["nll"] > b["nll"] and d["elbo"] > b["elbo"]
        better = d["nll"] < b["nll"] and d["elbo"] < b["elbo"]
        verdict = "Yes" if worse else "No" if better else "Mixed"
        ans = (
            f"{verdict}: test −ELBO {d['elbo']:.2f} with dropout vs {b['elbo']:.2f} for baseline; "
            f"NLL {d['nll']:.2f} ± {d['nll_stderr']:.2f} vs {b['nll']:.2f} ± {b['nll_stderr']:.2f} (lower is better)."
        )
    out.append((q, ans))

    q = "Does the deeper decoder sharpen reconstructions?"
    ans = need("deeper-decoder", "baseline")
    if ans is None:
        d, b = by["deeper-decoder"], by["baseline"]
        verdict = "Yes" if d["recon_mu"] < b["recon_mu"] else "No"
        ans = (
            f"{verdict}: reconstruction BCE with z = μ {d['recon_mu']:.2f} for deeper-decoder vs {b['recon_mu']:.2f} "
            f"for baseline (lower = closer to the input); test −ELBO {d['elbo']:.2f} vs {b['elbo']:.2f}."
        )
    out.append((q, ans))

    q = "Does `optimized` cover all ten digits?"
    ans = need("optimized")
    if ans is None:
        o = by["optimized"]
        total = sum(o["histogram"]) or 1
        smallest = min(range(10), key=lambda c: o["histogram"][c])
        verdict = "Yes" if o["coverage"] == 10 else "No"
        ans = (
            f"{verdict}: {o['coverage']} of 10 classes receive at least 5% of its samples; the rarest digit, "
            f"{smallest}, gets {100 * o['histogram'][smallest] / total:.1f}%; histogram entropy {o['entropy']:.3f} of 1; "
            f"{100 * o['blank_rate']:.1f}% blank or unreadable."
        )
    out.append((q, ans))

    q = "Does the LSTM encoder beat the dense encoder?"
    ans = need("optimized", "dense-encoder")
    if ans is None:
        o, d = by["optimized"], by["dense-encoder"]
        wins = [o["nll"] < d["nll"], o["elbo"] < d["elbo"], o["probe_accuracy"] > d["probe_accuracy"]]
        verdict = "Yes" if all(wins) else "No" if not any(wins) else "Mixed"
        ans = (
            f"{verdict} (same decoder, `optimized` vs `dense-encoder`): NLL {o['nll']:.2f} vs {d['nll']:.2f}; "
            f"test −ELBO {o['elbo']:.2f} vs {d['elbo']:.2f}; probe accuracy {o['probe_accuracy']:.3f} vs {d['probe_accuracy']:.3f}; "
            f"{o['images_per_second']:.0f} vs {d['images_per_second']:.0f} training images/s."
        )
    out.append((q, ans))

    q = "Does lr 0.001 converge faster?"
    ans = need("fast-lr", "baseline")
    if ans is None:
        f, b = by["fast-lr"], by["baseline"]
        hf, hb = f["test_loss_history"], b["test_loss_history"]
        target = 1.01 * max(hf[-1], hb[-1])  # within 1% of the worse final loss: a level both runs reach
        ef, eb = _epochs_to(hf, target), _epochs_to(hb, target)
        assert ef is not None and eb is not None  # both histories reach a level within 1% of the worse final loss
        verdict = "Yes" if ef < eb else "No" if ef > eb else "Equally fast"
        early = min(5, len(hf), len(hb))
        ans = (
            f"{verdict}: to reach test −ELBO {target:.2f} lr 0.001 (`fast-lr`) needs {ef} epoch(s), lr 0.0005 (`baseline`) {eb}; "
            f"after epoch {early}: {hf[early - 1]:.2f} vs {hb[early - 1]:.2f}; final: {hf[-1]:.2f} vs {hb[-1]:.2f}."
        )
    out.append((q, ans))
    return out


# --- report writing ------------------------------------------------------------------------------


def _fmt(row: dict[str, Any], key: str, fmt: str) -> str:
    v = row[key]
    if isinstance(v, float) and not math.isfinite(v):
        return "n/a"
    s = fmt.format(v)
    if key == "nll":
        s += f" ± {row['nll_stderr']:.2f}"
    if key == "active_units":
        s += f"/{row['latent_dim']}"
    return s


def _intro(meta: dict[str, Any]) -> list[str]:
    ds = meta["dataset"]
    lines = [
        f"Dataset: {ds['name']} ({ds['n_train']:,} train / {ds['n_test']:,} test, sha256 {ds['sha256'][:12]}…); "
        f"{meta['epochs']} epochs; seed {meta['seed']}; binarization: {meta['binarize']}.",
        f"NLL: importance-weighted bound with K = {meta['k']} (decoder in {meta['precision']}), ± one standard error over test images. "
        f"Samples: {meta['n_samples']:,} per configuration, judged by a CNN with test accuracy {meta['classifier_accuracy']:.4f}; "
        f"Fréchet distance on its penultimate features, train-vs-test floor {meta['frechet_floor']:.2f}.",
        "Lower is better for −ELBO, reconstruction, NLL, blank rate and Fréchet; higher for probe accuracy and coverage (of 10).",
    ]
    if "wall_seconds" in meta:
        lines.append(
            f"This study ran in {meta['wall_seconds'] / 60:.1f} min with {meta['jobs']} job(s); the largest peak resident "
            f"memory of any of its processes was {meta.get('peak_rss_mb', float('nan')):,.0f} MB."
        )
    if meta["binarize"] == "none":
        lines.append(
            "Pixels are grey (not binarized): BCE on grey pixels is not a proper likelihood, so the NLL compares "
            "these configurations with each other, not with published MNIST numbers (use --binarize dynamic for those)."
        )
    return lines


def write_report(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``out/report.md`` and the self-contained ``out/report.html``; returns both paths."""
    out = Path(out)
    heads = ["configuration"] + [h for _, h, _ in COLUMNS]
    md = ["# mnist-vae study", "", *(_intro(meta)), "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    md += ["| " + " | ".join([r["config"]] + [_fmt(r, k, f) for k, _, f in COLUMNS]) + " |" for r in rows]
    md += ["", "## Figures", ""]
    for fname, title in FIGURES:
        md += [
            f"### {title}",
            "",
            "| " + " | ".join(r["config"] for r in rows) + " |",
            "|" + "---|" * len(rows),
            "| " + " | ".join(f"![{r['config']}](runs/{r['config']}/{fname})" for r in rows) + " |",
            "",
        ]
    md += ["## Findings", ""]
    md += [f"- **{q}** {a}" for q, a in findings(rows)]
    md.append("")
    md_path = out / "report.md"
    atomic_write_text(md_path, "\n".join(md))

    e = html.escape
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mnist-vae study</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:100%} table{border-collapse:collapse} "
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right} td:first-child,th:first-child{text-align:left} "
        ".figs{display:flex;gap:12px;overflow-x:auto} .figs figure{margin:0} .figs img{max-width:360px} "
        "figcaption{text-align:center;font-weight:bold}",
        "</style></head><body><h1>mnist-vae study</h1>",
    ]
    page += [f"<p>{e(line)}</p>" for line in _intro(meta)]
    page.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in heads) + "</tr>")
    for r in rows:
        page.append("<tr>" + "".join(f"<td>{e(v)}</td>" for v in [r["config"]] + [_fmt(r, k, f) for k, _, f in COLUMNS]) + "</tr>")
    page.append("</table><h2>Figures</h2>")
    for fname, title in FIGURES:
        page.append(f"<h3>{e(title)}</h3><div class='figs'>")
        for r in rows:
            img = out / "runs" / r["config"] / fname
            src = ("data:image/png;base64," + base64.b64encode(img.read_bytes()).decode("ascii")) if img.exists() else ""
            body = f"<img src='{src}' alt='{e(r['config'])}'>" if src else "<p>(missing)</p>"
            page.append(f"<figure><figcaption>{e(r['config'])}</figcaption>{body}</figure>")
        page.append("</div>")
    page.append("<h2>Findings</h2><ul>")
    page += [f"<li><b>{e(q)}</b> {e(a)}</li>" for q, a in findings(rows)]
    page.append("</ul></body></html>")
    html_path = out / "report.html"
    atomic_write_text(html_path, "\n".join(page))
    return md_path, html_path
