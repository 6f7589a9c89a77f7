"""job=info for people: the verdict (fits or not, memory needed against memory here, speed) and the details as
short tables. Every memory figure names the batch and context it assumes."""

from __future__ import annotations

from typing import Any


def _gb(value: float) -> str:
    return f"{value:.1f} GiB"


def _model(doc: dict[str, Any]) -> str:
    size = doc["config"]["size"]
    ref = size.get("hf_id") or size.get("ollama_tag") or size.get("path")
    params = size.get("parameters")
    facts = [str(x) for x in (ref, f"{params / 1e9:.1f}B parameters" if params else None) if x]
    return f"{doc['size']} ({', '.join(facts)})" if facts else str(doc["size"])


def _override(row: dict[str, Any], backend: str) -> str:
    """The override that loads the model as ``row`` says."""
    if row["backend"] != backend:
        return f"backend={row['backend']}, as {row['mode']}"
    key = "quantization" if row["mode"] in ("8bit", "4bit") else "dtype"
    return f"hardware.{key}={row['mode']}"


def _rate(row: dict[str, Any], kind: str) -> str:
    what = "input tokens/s" if kind == "embed" else f"tokens/s over {row['batch']} sequences"
    return f"{row['tokens_per_s']:.1f} {what}"


def verdict(doc: dict[str, Any]) -> list[str]:
    """A few lines: does the configured size fit, in which mode, against how much memory, how fast, and what next."""
    plan, backend = doc["plan"], doc["backend"]["backend"]
    kind = str(doc["config"]["size"].get("kind") or "generate")
    here = f"{_gb(plan['budget_gb'])} usable here ({_gb(plan['memory_gb'])} {plan['memory_source']}, "
    here += f"{plan['margin']:.0%} kept free)"
    assumes = f"job.batch_size={plan['batch']} x {plan['context']:,} tokens"
    rows = [r for r in doc["fits"] if r["backend"] == backend and r["configured"]]
    where = f"backend={backend} on {plan['device']}"
    if not rows:
        return [f"{_model(doc)}, {where}: no memory estimate (the size has no parameter count); {here}."]
    first, fitting = rows[0], next((r for r in rows if r["fits"]), None)
    lines = []
    if fitting is not None:
        batch = f"{fitting['max_batch']}{'+' if fitting['max_batch'] >= 512 else ''}"
        head = f"FITS: {_model(doc)}, {where} as {fitting['mode']}"
        if fitting is not first:
            head += f" (not as {first['mode']}, which needs {_gb(first['total_gb'])})"
        lines.append(f"{head}: needs {_gb(fitting['total_gb'])} at {assumes}; {here}; up to {batch} sequences fit.")
    else:
        lines.append(
            f"DOES NOT FIT: {_model(doc)}, {where} needs {_gb(first['total_gb'])} as {first['mode']} at {assumes}; "
            f"{here}."
        )
        if first["max_batch"] > 0:
            lines.append(f"  It fits with job.batch_size={first['max_batch']} or less.")
        others = [r for r in doc["fits"] if r["fits"] and r not in rows]
        for row in others[:2]:
            lines.append(f"  It fits with {_override(row, backend)}: {_gb(row['total_gb'])} at the same batch.")
    shown = fitting or first
    if shown.get("tokens_per_s") is not None:
        speed = doc.get("cpu_speed") or {}
        floor_key = "min_embed_tokens_per_s" if kind == "embed" else "min_tokens_per_s"
        floor = doc["config"]["hardware"].get(floor_key) or 0
        slow = f", below hardware.{floor_key}={floor:g}: slow here" if shown["tokens_per_s"] < floor else ""
        measured = f"{speed.get('gflops', 0):.0f} GFLOP/s, {speed.get('bandwidth_gbs', 0):.0f} GB/s"
        lines.append(f"Speed: about {_rate(shown, kind)} as {shown['mode']} on this CPU ({measured}){slow}.")
    weights = doc.get("weights") or {}
    if weights.get("cached") is False:
        how = f": `{weights['download']}` where there is network" if weights.get("download") else ""
        lines.append(f"Weights: not here{how}.")
    elif weights.get("cached"):
        lines.append("Weights: here.")
    pick = (doc.get("recommended") or {}).get(backend, {}).get(kind)
    if pick:
        lines.append(
            f"size=auto would pick {pick['size']} here ({pick['mode']}, {_gb(pick['total_gb'])} at "
            f"job.batch_size={pick['batch']} x {pick['context']:,} tokens)"
            + ("; it is not in the Hugging Face cache." if pick.get("cached") is False else ".")
        )
    return lines


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return ["  " + fmt.format(*headers).rstrip(), *("  " + fmt.format(*r).rstrip() for r in rows)]


def render(doc: dict[str, Any]) -> str:
    """The verdict, then what fits where, this machine, size=auto's picks and the tiers."""
    plan, kind = doc["plan"], str(doc["config"]["size"].get("kind") or "generate")
    out = [*doc["verdict"], ""]
    if doc["fits"]:
        out.append(
            f"What {doc['size']} needs, per backend and mode (each at job.batch_size={plan['batch']} x "
            f"{plan['context']:,} tokens; max batch: the most sequences that fit {_gb(plan['budget_gb'])}):"
        )
        rows = [
            [
                r["backend"] + (" *" if r["configured"] else ""),
                r["mode"],
                _gb(r["total_gb"]),
                "yes" if r["fits"] else "no",
                str(r["max_batch"]),
                "-" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:.1f}",
            ]
            for r in doc["fits"]
        ]
        speed_head = "est. input tokens/s" if kind == "embed" else "est. tokens/s"
        out += _table(["backend", "mode", "needs", "fits", "max batch", speed_head], rows)
        out.append("  (* what this config may load; tokens/s: estimated on a CPU for a backend that computes in adam)")
        out.append("")
    det = doc["detected"]
    gpus = ", ".join(f"{g['name']} {g['free_gb']:.1f} of {g['total_gb']:.1f} GiB free" for g in det["gpus"]) or "none"
    out.append(
        f"This machine: {det['cpu_cores']} CPU cores, {_gb(det['ram_available_gb'])} of {_gb(det['ram_total_gb'])} "
        f"RAM available, GPUs: {gpus}{', Apple MPS' if det['mps'] else ''}; profile {det['profile']}."
    )
    if doc.get("cpu_speed"):
        speed = doc["cpu_speed"]
        out.append(
            f"  CPU speed: {speed['gflops']:.0f} GFLOP/s float32 matmul, {speed['bandwidth_gbs']:.0f} GB/s "
            f"({speed['source']})."
        )
    out.append("")
    out.append("size=auto would pick (each planned for its job's job.batch_size and the context shown):")
    rows = []
    for backend, kinds in (doc.get("recommended") or {}).items():
        for job_kind, pick in kinds.items():
            if pick is None:
                rows.append([backend, job_kind, "nothing fits", "", "", ""])
                continue
            rate = "-" if pick.get("tokens_per_s") is None else f"{pick['tokens_per_s']:.1f}"
            cached = {True: "", False: " (not cached)"}.get(pick.get("cached"), "")
            where = f"batch {pick['batch']} x {pick['context']:,}"
            rows.append(
                [backend, job_kind, pick["size"] + cached, pick["mode"], f"{_gb(pick['total_gb'])} at {where}", rate]
            )
    out += _table(["backend", "job kind", "size", "mode", "needs", "est. tokens/s"], rows)
    out.append("")
    out.append(
        "The design's tiers (each pick planned for one sequence, batch 1, of its context; max batch: most that fit):"
    )
    for tier in doc["tiers"]:
        memory = f", {tier['memory_gb']:.1f} GiB" if tier["memory_gb"] else ""
        picks = []
        for p in tier["picks"]:
            fits = {None: "?", True: f"fits, batch up to {p['max_batch']}", False: "does not fit"}[p["fits"]]
            picks.append(f"{p['size']} {_gb(p['total_gb'])} as {p['mode']} ({fits})")
        out.append(
            f"  {tier['tier']} (hardware={tier['profile']}{memory}, {tier['context']:,} tokens): " + "; ".join(picks)
        )
    return "\n".join(out)
