"""The study's report: every metric as mean ± 95% interval over seeds, the claim table, the figures.

:func:`summarize` turns the per-seed rows into data (the table and the claims); :func:`write_report`
renders that data as ``report.md`` and a self-contained ``report.html`` (figures embedded).
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from ..presets import kind_of
from ..stats import equivalence, interval, paired, verdict
from . import claim_figures
from .claim_table import claim_lines, headline, missing_line, protocol_note
from .claims import evaluate_claims

WRITEUP, BEYOND = ("write-up", "finding"), ("beyond",)

FIGURES = (
    ("reconstructions.png", "Reconstructions (top: test digits, bottom: decoded μ)"),
    ("loss_curves.png", "Loss curves"),
    ("samples.png", "Samples from N(0, I)"),
    ("samples_over_training.png", "The same z decoded over training"),
)

#: (key, header, format) of the report table's columns, in order; each cell is mean ± 95% half-width.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("train_seconds", "train s", "{:.0f}"),
    ("images_per_second", "img/s", "{:.0f}"),
    ("elbo", "test −ELBO", "{:.2f}"),
    ("recon", "recon", "{:.2f}"),
    ("kl", "KL", "{:.2f}"),
    ("nll", "NLL", "{:.2f}"),
    ("active_units", "active units", "{:.1f}"),
    ("probe_accuracy", "probe acc.", "{:.3f}"),
    ("recon_accuracy", "recon. read right", "{:.3f}"),
    ("coverage", "coverage", "{:.1f}"),
    ("blank_rate", "blank rate", "{:.3f}"),
    ("frechet", "Fréchet", "{:.1f}"),
)
SUMMARY_FIGURES = (
    ("curves.png", "Test −ELBO per epoch (line: mean over seeds; band: lowest to highest seed)"),
    ("nll.png", "NLL per configuration: mean and 95% interval over seeds (lower is better)"),
)


def summarize(rows: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """The study as data: per-configuration intervals, the claims, and the per-seed rows."""
    names = list(dict.fromkeys(r["config"] for r in rows))
    table = []
    for name in names:
        mine = [r for r in rows if r["config"] == name]
        cells = {key: _interval_dict([float(r[key]) for r in mine]) for key, _, _ in COLUMNS}
        table.append(
            {
                "config": name,
                "kind": kind_of(name.split("[")[0]),
                "seeds": [r["seed"] for r in mine],
                "parameters": mine[0]["parameters"],
                "latent_dim": mine[0]["latent_dim"],
                "trained_as": sorted({trained_as(r) for r in mine}),
                **cells,
            }
        )
    claims = evaluate_claims(rows, sequential=bool(meta.get("sequential")))
    for c in claims:  # a sequential study stopped feeding these: say so beside their verdict
        if meta.get("max_seeds") and (c.get("seeds_for_power") or 0) > meta["max_seeds"]:
            c["beyond_max_seeds"] = meta["max_seeds"]
    return {"meta": meta, "table": table, "claims": claims, "variants": variant_effects(rows), "rows": rows}


def trained_as(row: dict[str, Any]) -> str:
    """The settings a run resolved to, in words (``bf16, 50 epochs, binarize none, device cpu, 1 thread(s)``)."""
    r = row.get("resolved")
    if not r:
        return f"{row.get('train_precision', '?')}, {row.get('epochs', '?')} epochs"
    threads = f"{r['threads']} thread(s)" if r["threads"] else "all cores"
    return f"{r['precision']}, {r['epochs']} epochs, binarize {r['binarize']}, device {r['device']}, {threads}"


def _trained_lines(result: dict[str, Any]) -> list[list[str]]:
    return [
        ["configuration", "trained with (as each run recorded it)"],
        *([t["config"], "; ".join(t["trained_as"])] for t in result["table"]),
    ]


#: A variant's effect is called negligible when its whole 95% interval lies within ± this many nats.
NEGLIGIBLE_NATS = 0.5


def variant_effects(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each ``BASE[changes]`` configuration whose BASE is in the study: its paired effect on NLL and test −ELBO."""
    names = list(dict.fromkeys(r["config"] for r in rows))
    out = []
    for name in names:
        base = name.split("[")[0]
        if "[" not in name or base not in names:
            continue
        for key, label in (("nll", "NLL"), ("elbo", "test −ELBO")):
            a = {r["seed"]: float(r[key]) for r in rows if r["config"] == name}
            b = {r["seed"]: float(r[key]) for r in rows if r["config"] == base}
            d = paired(a, b)
            out.append(
                {
                    "variant": name,
                    "base": base,
                    "metric": label,
                    "n": d.n,
                    "mean": d.mean,
                    "lo": d.lo,
                    "hi": d.hi,
                    "sd": d.sd,
                    "differs": verdict(d, "differs"),
                    "negligible": equivalence(d, NEGLIGIBLE_NATS),
                }
            )
    return out


def _interval_dict(values: list[float]) -> dict[str, Any]:
    iv = interval(values)
    return {"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "sd": iv.sd, "n": iv.n, "values": list(iv.values)}


def _cell(cell: dict[str, Any], fmt: str) -> str:
    iv = interval(cell["values"])
    return iv.text(fmt) if math.isfinite(iv.mean) else "n/a"


def _intro(meta: dict[str, Any]) -> list[str]:
    ds = meta["dataset"]
    lines = [
        f"Dataset: {ds['name']} ({ds['n_train']:,} train / {ds['n_test']:,} test, sha256 {ds['sha256'][:12]}…); {meta['epochs']} epochs; "
        f"{_seeds_text(meta)}; binarization: {meta['binarize']}; "
        f"training precision {', '.join(meta['train_precisions'])}, device {meta['device']}.",
        f"Every number is the mean over seeds ± the half-width of its 95% Student-t interval. NLL: importance-weighted bound with "
        f"K = {meta['k']} (decoder in {', '.join(meta.get('nll_precisions') or [meta['precision']])}). Samples: {meta['n_samples']:,} per run, judged by a CNN with test accuracy "
        f"{meta['classifier_accuracy']:.4f}; Fréchet distance on its features, train-vs-test floor {meta['frechet_floor']:.2f}.",
        "Lower is better for −ELBO, reconstruction, NLL, blank rate and Fréchet; higher for probe accuracy, reconstructions read "
        "right and coverage (of 10). `mlp-vae` is the reference: the standard MLP VAE of pytorch/examples.",
    ]
    spent = meta.get("run_minutes")
    summed = f"summed over its runs, training took {spent['train']:.1f} min and evaluation {spent['eval']:.1f} min" if spent else ""
    if meta.get("report_only"):
        lines.append(f"This report was made with --report-only from runs trained and evaluated earlier; {summed}.")
    elif "wall_seconds" in meta:
        lines.append(
            f"This study's last invocation ran {meta['wall_seconds'] / 60:.1f} min with {meta['jobs']} job(s) ({meta['executor']} executor)"
            f"{'; ' + summed if summed else ''}; the largest peak resident memory of any of its processes was "
            f"{meta.get('peak_rss_mb', float('nan')):,.0f} MB."
        )
    if meta["binarize"] == "none":
        lines.append(
            "Pixels are grey (not binarized): BCE on grey pixels is not a proper likelihood, so the NLL compares these "
            "configurations with each other, not with published MNIST numbers (use --binarize dynamic for those)."
        )
    return lines


def _seeds_text(meta: dict[str, Any]) -> str:
    counts = sorted({len(v) for v in (meta.get("seeds_by_config") or {}).values()})
    if len(counts) > 1:  # a sequential study added seeds where claims were open
        return f"{counts[0]} to {counts[-1]} training seeds per configuration (the table's seeds column; added in rounds)"
    seeds = meta["seeds"]
    return f"{len(seeds)} training seed(s) per configuration ({', '.join(map(str, seeds))})"


def _table_lines(result: dict[str, Any]) -> list[list[str]]:
    head = ["configuration", "kind", "seeds", "parameters"] + [h for _, h, _ in COLUMNS]
    body = [
        [t["config"], t["kind"], str(len(t["seeds"])), f"{t['parameters']:,d}"] + [_cell(t[k], f) for k, _, f in COLUMNS]
        for t in result["table"]
    ]
    return [head, *body]


def _md_table(lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(lines[0])]
    return out + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in lines[1:]]


def _html_table(lines: list[list[str]]) -> str:
    """A table whose text cells are left-aligned, numbers right-aligned, verdicts coloured."""
    e = html.escape
    rows = ["<tr>" + "".join(f"<th>{e(h)}</th>" for h in lines[0]) + "</tr>"]
    rows += ["<tr>" + "".join(f"<td class='{_cell_class(v)}'>{e(v)}</td>" for v in row) + "</tr>" for row in lines[1:]]
    return "<div class='wide'><table>" + "".join(rows) + "</table></div>"


def _cell_class(value: str) -> str:
    for word in ("supported", "contradicted", "inconclusive", "not measured"):
        if value.startswith(word):
            return "v-" + word.replace(" ", "-")
    return "num" if _NUMBER.fullmatch(value) else "text"


_NUMBER = re.compile(r"[−+-]?[\d,.]+( ± [\d,.]+)?|n/a")


def _claim_notes(result: dict[str, Any], sources: tuple[str, ...]) -> list[str]:
    notes = [protocol_note(result["meta"])] if sources == WRITEUP else []
    line = missing_line(result["claims"], sources)
    return notes + ([line] if line else [])


def _summary_figures(out: Path, result: dict[str, Any]) -> None:
    from ..viz import plots

    rows, table = result["rows"], result["table"]
    names = [t["config"] for t in table]
    series = {n: [r["test_loss_history"] for r in rows if r["config"] == n] for n in names}
    finals = [min(h) for runs in series.values() for h in runs]
    plots.curves_with_bands(series, out / "curves.png", "test −ELBO per epoch", "nats per image", low=min(finals) - 5 if finals else None)
    nll = [t["nll"] for t in table]
    marked = {t["config"]: "reference" for t in table if t["kind"] == "reference"}
    plots.interval_dots(
        names,
        [c["mean"] for c in nll],
        [c["lo"] for c in nll],
        [c["hi"] for c in nll],
        out / "nll.png",
        marked,
        "NLL per configuration, mean and 95% interval over seeds",
        "nats per image",
    )


def _first_run(result: dict[str, Any], name: str) -> str:
    """The run folder (relative to the study) whose figures represent ``name``: its lowest seed."""
    run = min((r for r in result["rows"] if r["config"] == name), key=lambda r: r["seed"])["run"]
    parts = Path(run).parts
    return "/".join(parts[parts.index("runs") :]) if "runs" in parts else run


def _variant_lines(result: dict[str, Any]) -> list[list[str]]:
    head = ["variant", "against", "metric", "seeds", "difference [95% CI]", "different from 0?", f"within ±{NEGLIGIBLE_NATS} nats?"]
    body = []
    for v in result.get("variants", []):
        ci = f"{v['mean']:+.2f}" if v["n"] < 2 else f"{v['mean']:+.2f} [{v['lo']:+.2f}, {v['hi']:+.2f}]"
        body.append([v["variant"], v["base"], v["metric"], str(v["n"]), ci, v["differs"], v["negligible"]])
    return [head, *body]


def write_report(out: Path, result: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``out/report.md`` and the self-contained ``out/report.html`` (and the two summary figures)."""
    out = Path(out)
    _summary_figures(out, result)
    names = [t["config"] for t in result["table"]]
    sections = [
        ("How each configuration was trained", _trained_lines(result), []),
        ("Claims of the original write-up", claim_lines(result["claims"], WRITEUP), _claim_notes(result, WRITEUP)),
        ("Beyond the write-up", claim_lines(result["claims"], BEYOND), _claim_notes(result, BEYOND)),
    ]
    if result.get("variants"):
        sections.append(("Variants against their base configuration (paired by seed; variant − base)", _variant_lines(result), []))
    pictures = claim_figures.draw(out, result)
    md = ["# mnist-vae study", "", headline(result), "", *_intro(result["meta"]), ""]
    md += [line for fname, title in SUMMARY_FIGURES for line in (f"### {title}", "", f"![{title}]({fname})", "")]
    md += ["## Results", "", *_md_table(_table_lines(result)), ""]
    for title, lines, notes in sections:
        md += [f"## {title}", "", *(n for note in notes for n in (note, "")), *(_md_table(lines) if len(lines) > 1 else []), ""]
    if pictures:
        md += ["## The claims in pictures", ""]
        md += [line for fname, title in pictures for line in (f"### {title}", "", f"![{title}]({fname})", "")]
    md += ["## Figures of each configuration (lowest seed)", ""]
    for fname, title in FIGURES:
        md += [
            f"### {title}",
            "",
            "| " + " | ".join(names) + " |",
            "|" + "---|" * len(names),
            "| " + " | ".join(f"![{n}]({_first_run(result, n)}/{fname})" for n in names) + " |",
            "",
        ]
    md_path = out / "report.md"
    atomic_write_text(md_path, "\n".join(md))
    html_path = out / "report.html"
    atomic_write_text(html_path, _html(out, result, names, sections, pictures))
    return md_path, html_path


def _img(path: Path, alt: str) -> str:
    if not path.exists():
        return "<p>(missing)</p>"
    return f"<img src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode('ascii')}' alt='{html.escape(alt)}'>"


def _html(
    out: Path,
    result: dict[str, Any],
    names: list[str],
    sections: list[tuple[str, list[list[str]], list[str]]],
    pictures: list[tuple[str, str]],
) -> str:
    e = html.escape
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mnist-vae study</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:100%} table{border-collapse:collapse;margin-bottom:1em} "
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top} td.num{text-align:right;white-space:nowrap} "
        ".v-supported{background:#d9f2d9} .v-contradicted{background:#f8d7d7} .v-inconclusive{background:#fff3cd} "
        ".v-negligible{background:#dde8f8} .v-not-measured{color:#777} .headline{font-size:1.1em;font-weight:bold} "
        ".wide{overflow-x:auto;max-width:100%} .wide table{font-size:0.92em} "
        ".figs{display:flex;gap:12px;overflow-x:auto} .figs figure{margin:0} .figs img{max-width:360px} "
        ".summary img{max-width:900px} .claims img{max-width:100%} figcaption{text-align:center;font-weight:bold}",
        "</style></head><body><h1>mnist-vae study</h1>",
    ]
    page.append(f"<p class='headline'>{e(headline(result).replace('**', ''))}</p>")
    page += [f"<p>{e(line)}</p>" for line in _intro(result["meta"])]
    page += [f"<h3>{e(title)}</h3><div class='summary'>{_img(out / fname, title)}</div>" for fname, title in SUMMARY_FIGURES]
    page += ["<h2>Results</h2>", _html_table(_table_lines(result))]
    page += [
        f"<h2>{e(title)}</h2>{''.join(f'<p>{e(n)}</p>' for n in notes)}{_html_table(lines) if len(lines) > 1 else ''}"
        for title, lines, notes in sections
    ]
    if pictures:
        page.append("<h2>The claims in pictures</h2>")
        page += [f"<h3>{e(title)}</h3><div class='claims'>{_img(out / fname, title)}</div>" for fname, title in pictures]
    page.append("<h2>Figures of each configuration (lowest seed)</h2>")
    for fname, title in FIGURES:
        figs = "".join(f"<figure><figcaption>{e(n)}</figcaption>{_img(out / _first_run(result, n) / fname, n)}</figure>" for n in names)
        page.append(f"<h3>{e(title)}</h3><div class='figs'>{figs}</div>")
    page.append("</body></html>")
    return "\n".join(page)
