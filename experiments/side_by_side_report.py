"""The side-by-side benchmark's figures: per variant and scenario, the medians, the machine total, and the table.

Split from ``experiments/side_by_side.py``, the command line; see its docstring for what each
figure means.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
from pathlib import Path
from typing import Any

from mnist_vae.runtime import share


def summarize(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per variant and scenario: median over rounds of each process's figure, the machine total, vs alone."""
    out: dict[str, dict[str, dict[str, Any]]] = {}

    def med(rounds: list[list[float]], i: int) -> float:
        return statistics.median(r[i] for r in rounds)

    for v, sc in results.items():
        alone = med(sc["train"]["train_img_s"], 0)
        rows: dict[str, dict[str, Any]] = {"train": {"per_process": [alone], "total_img_s": alone, "vs_alone": 1.0}}
        eval_alone = med(sc["evaluate"]["eval_s"], 0) if "evaluate" in sc else None
        if eval_alone is not None:
            rows["evaluate"] = {"eval_s": eval_alone}
        if "train+train" in sc:
            rates = [med(sc["train+train"]["train_img_s"], i) for i in range(2)]
            rows["train+train"] = {"per_process": rates, "total_img_s": sum(rates), "vs_alone": sum(rates) / alone}
        if "train+evaluate" in sc and eval_alone is not None:
            rate, seconds = med(sc["train+evaluate"]["train_img_s"], 0), med(sc["train+evaluate"]["eval_s"], 0)
            rows["train+evaluate"] = {
                "per_process": [rate],
                "eval_s": seconds,
                "eval_alone_s": eval_alone,
                "shares": [rate / alone, eval_alone / seconds],
                "vs_alone": rate / alone + eval_alone / seconds,
            }
        if "study+train" in sc:
            # The study trains the same configuration with the same settings: its epochs compare with train alone.
            rate, srate = med(sc["study+train"]["train_img_s"], 0), med(sc["study+train"]["study_img_s"], 0)
            rows["study+train"] = {"per_process": [srate, rate], "total_img_s": rate + srate, "vs_alone": (rate + srate) / alone}
        if "nice-study+train" in sc:
            rate, srate = med(sc["nice-study+train"]["train_img_s"], 0), med(sc["nice-study+train"]["study_img_s"], 0)
            rows["nice-study+train"] = {"per_process": [srate, rate], "total_img_s": rate + srate, "vs_alone": (rate + srate) / alone,
                                        "train_vs_alone": rate / alone}  # fmt: skip
        for loop in ("train+nice-loop", "train+nice-loop-elsewhere"):
            if loop in sc:
                rate = med(sc[loop]["train_img_s"], 0)
                rows[loop] = {"per_process": [rate], "total_img_s": rate, "vs_alone": rate / alone}
        out[v] = rows
    return out


def table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The table: what ran | img/s per process | machine total | vs alone."""
    lines = ["| variant | what ran | img/s per process | machine total | vs alone |", "|---|---|---|---|---|"]
    for v, rows in summary.items():
        for name, r in rows.items():
            if name == "train":
                lines.append(f"| {v} | train alone | {r['total_img_s']:,.0f} | {r['total_img_s']:,.0f} img/s | 1.00× |")
            elif name == "train+train":
                per = " + ".join(f"{x:,.0f}" for x in r["per_process"])
                lines.append(f"| {v} | train + train | {per} | {r['total_img_s']:,.0f} img/s | {r['vs_alone']:.2f}× |")
            elif name in ("study+train", "nice-study+train"):
                study, train = r["per_process"]
                what = "study + train" if name == "study+train" else "nice-19 study + train"
                mine = f" (train {r['train_vs_alone']:.2f}× of alone)" if "train_vs_alone" in r else ""
                lines.append(
                    f"| {v} | {what} | study {study:,.0f}; train {train:,.0f}{mine} | {r['total_img_s']:,.0f} img/s | {r['vs_alone']:.2f}× |"
                )
            elif name in ("train+nice-loop", "train+nice-loop-elsewhere"):
                where = "of the same session" if name == "train+nice-loop" else "of another session"
                lines.append(
                    f"| {v} | train beside a nice-19 busy loop {where} | {r['total_img_s']:,.0f} | {r['total_img_s']:,.0f} img/s (the "
                    f"loop's not counted) | {r['vs_alone']:.2f}× |"
                )
            elif name == "train+evaluate":
                a, b = r["shares"]
                lines.append(
                    f"| {v} | train + evaluate | train {r['per_process'][0]:,.0f}; evaluate {r['eval_s']:.1f} s "
                    f"(alone {r['eval_alone_s']:.1f} s) | train {a:.2f} + evaluate {b:.2f} of alone | {r['vs_alone']:.2f}× |"
                )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """The CPU's model name and its cores."""
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return {"cpu": name, "cores": share.cores(), "python": platform.python_version()}
