"""``qlam-qiskit report``: what a QLAM circuit costs on devices over T; ``report budget``: what fits."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..backends import Backend, generic_backend, resolve_backend
from ..circuits.cell import ENCODINGS, ENTANGLERS, ENTANGLEMENTS, CellConfig, CellTemplate
from ..circuits.custom import cell_info
from ..errors import QLAMError
from ..io import check_writable, load_checkpoint, save_json, save_text
from ..models.qlam import ModelConfig
from ..training.plan import stored_cell
from .common import int_list, name_list, user_errors

ENTANGLEMENT_CHOICES = ENTANGLEMENTS + ("coupling",)
DEFAULT_STEPS = "1,4,16,64,256,784"


def _cell_and_layouts(checkpoint, qubits, depth, entangler, encoding,
                      notes: list[str] | None = None
                      ) -> tuple[CellConfig | CellTemplate, dict, str | None]:
    """The cell (options over checkpoint over `run`'s defaults; a checkpoint's own cell circuit
    as it is), checkpoint layouts, entanglement."""
    base = {k: getattr(ModelConfig(), k) for k in ("qubits", "depth", "entanglement", "entangler",
                                                   "encoding")}
    layouts: dict[str, tuple[int, ...]] = {}
    ent = None
    if checkpoint:
        state = load_checkpoint(checkpoint)
        p = checkpoint
        cfg = state["model_config"]
        base.update({k: cfg[k] for k in base if k in cfg})
        ent = cfg.get("entanglement")
        if notes is not None and (cfg.get("layers", 1) > 1 or cfg.get("heads", 1) > 1):
            notes.append(f"{p} has {cfg.get('layers')} layer(s) x {cfg.get('heads')} memories; "
                         "this is the circuit of one memory (primitives backends run --layers 1 "
                         "--heads 1)")
        if state.get("layout"):  # trained with --entanglement coupling on that backend
            layouts[state.get("backend", "")] = tuple(state["layout"])
        custom = stored_cell(state)
        if custom is not None:
            given = [f"--{k}" for k, v in (("qubits", qubits), ("depth", depth),
                                           ("entangler", entangler), ("encoding", encoding)) if v]
            if given:
                raise QLAMError(f"{checkpoint} runs its own cell circuit: drop {', '.join(given)}")
            return custom, layouts, "custom"
    given = {"qubits": qubits, "depth": depth, "entangler": entangler, "encoding": encoding}
    base.update({k: v for k, v in given.items() if v is not None})
    ent = ent or base["entanglement"]
    base["entanglement"] = ent if ent in ENTANGLEMENTS else "ring"
    return CellConfig(**base), layouts, ent


def _backends(names, basis_gates, coupling_map, noise) -> list[Backend]:
    """The device backends named, plus a generic one when a coupling map is given."""
    if not names and not coupling_map:
        raise QLAMError("give --backend fake_<device> (e.g. fake_fez), ibm_<device>, or a "
                        "generic target with --coupling-map (and --basis-gates)")
    if (basis_gates or noise) and not coupling_map:
        raise QLAMError("--basis-gates/--noise describe a generic target: add --coupling-map, "
                        "e.g. --coupling-map ring:6")
    out = []
    for n in dict.fromkeys(names):
        b = resolve_backend(n)
        if not b.has_device:
            b.qiskit_target  # raises: reports need a device
        out.append(b)
    if coupling_map:
        out.append(generic_backend(basis_gates or "cz,rz,sx,x", coupling_map, noise))
    return out


def _model_options(f):
    """Options shared by report and report budget: targets and the cell."""
    opts = [
        click.option("--backend", "backends", multiple=True,
                     help="fake_<device> or ibm_<device>; repeat for several."),
        click.option("--coupling-map", help="Also cost on a generic target with this coupling: "
                     "line:N, ring:N, grid:RxC, full:N, heavyhex:D or edges 0-1,1-2,..."),
        click.option("--basis-gates", help="Generic target's gates [default: cz,rz,sx,x]."),
        click.option("--noise", help="Generic target's uniform calibration, e.g. "
                     "1q=2e-4,2q=3e-3,readout=1e-2,t1=2e-4,t2=1.5e-4,1q_time=3.2e-8,"
                     "2q_time=6.8e-8,readout_time=1.5e-6 (rz is virtual)."),
        click.option("--checkpoint", type=click.Path(), help="Take the cell from a run folder "
                     "or checkpoint.pt (options below override it)."),
        click.option("--qubits", type=click.IntRange(1, 64), help="Qubits n [default: run's, 3]."),
        click.option("--depth", type=click.IntRange(0), help="Mixing layers per token [1]."),
        click.option("--entangler", type=click.Choice(ENTANGLERS), help="[default: rzz, as run]"),
        click.option("--encoding", type=click.Choice(ENCODINGS), help="[default: rz]"),
        click.option("--seed", type=int, default=0, show_default=True, help="seed_transpiler."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.group("report", invoke_without_command=True)
@_model_options
@click.option("--entanglement", default=None, help="ring, linear, full, none, coupling, or a "
              "comma list to compare [default: the checkpoint's, else ring].")
@click.option("--optimization-level", "levels", default="1", show_default=True,
              help="Preset pass-manager level(s) 0-3, comma list to compare.")
@click.option("--steps", default=DEFAULT_STEPS, show_default=True,
              help="Sequence lengths T (tokens).")
@click.option("--transpile-max", type=click.IntRange(2), default=64, show_default=True,
              help="Transpile lengths up to this; longer ones are extrapolated per token.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder for report.md, report.json and plots [default: runs/report-<time>].")
@click.pass_context
@user_errors
def report_cmd(ctx, backends, coupling_map, basis_gates, noise, checkpoint, qubits, depth,
               entangler, encoding, seed, entanglement, levels, steps, transpile_max, out) -> None:
    """Depth, gate counts, SWAPs, layout, estimated success and duration of a QLAM circuit vs T."""
    if ctx.invoked_subcommand is not None:
        return
    from ..reports.plots import write_plots
    from ..reports.render import markdown, to_json
    from ..reports.scaling import series, setting

    t0 = time.perf_counter()
    out = Path(out) if out else Path("runs") / f"report-{time.strftime('%Y%m%d-%H%M%S')}"
    step_list = tuple(sorted(set(int_list(steps, "--steps", 1, example=DEFAULT_STEPS))))
    level_list = tuple(sorted(set(int_list(levels, "--optimization-level", 0, 3, example="0,1"))))
    notes: list[str] = []
    cell, layouts, ent = _cell_and_layouts(checkpoint, qubits, depth, entangler, encoding,
                                           notes)
    check_writable(out)  # before minutes of transpiling
    allowed = ("custom", "coupling") if ent == "custom" else ENTANGLEMENT_CHOICES
    ents = name_list(entanglement, allowed, "--entanglement") if entanglement else (ent,)
    targets = _backends(backends, basis_gates, coupling_map, noise)
    all_series, cache = [], {}
    for b in targets:
        for e in ents:
            for lvl in level_list:
                s = setting(b, cell, e, lvl, layouts.get(b.name) if e == ent else None)
                se = series(s, step_list, transpile_max=transpile_max, seed=seed,
                            logical_cache=cache)
                all_series.append(se)
                click.echo(f"{b.name} O{lvl} {e}: {se.per_token['ops_2q']:.1f} 2q gates/token, "
                           f"transpiled in {se.transpile_s:.1f}s", err=True)
    if any(not r["errors_known"] for se in all_series for r in se.rows):
        notes.append("some operations have no error rate in their target (counted as "
                     "error-free): give a generic target --noise to estimate success")
    cell_d = cell_info(cell) if isinstance(cell, CellTemplate) else {
        "qubits": cell.qubits, "depth": cell.depth, "entangler": cell.entangler,
        "encoding": cell.encoding}
    cell_d["checkpoint"] = str(checkpoint) if checkpoint else None
    text = markdown(all_series, cell_d, notes)
    pngs = write_plots(all_series, out)
    options = {"backends": [b.name for b in targets], "entanglement": list(ents),
               "optimization_levels": list(level_list), "steps": list(step_list),
               "transpile_max": transpile_max, "seed": seed}
    save_text(text, out / "report.md")
    save_json(to_json(all_series, cell_d, options, time.perf_counter() - t0, notes),
              out / "report.json")
    click.echo(text)
    click.echo(f"wrote {out / 'report.md'}, {out / 'report.json'}, "
               + ", ".join(p.name for p in pngs) + f" in {time.perf_counter() - t0:.1f}s")


@report_cmd.command("budget")
@_model_options
@click.option("--min-fidelity", type=float, required=True,
              help="Estimated success probability the circuit must keep, e.g. 0.1.")
@click.option("--estimate", type=click.Choice(["idle", "gates"]), default="idle",
              show_default=True, help="idle: gates + readout + T1/T2 idle; gates: no idle charge.")
@click.option("--entanglement", type=click.Choice(ENTANGLEMENT_CHOICES),
              help="[default: the checkpoint's, else ring]")
@click.option("--optimization-level", "level", type=click.IntRange(0, 3), default=1,
              show_default=True)
@click.option("--max-qubits", type=click.IntRange(2, 64), default=12, show_default=True,
              help="Widest memory n to try.")
@click.option("--min-steps", type=click.IntRange(1), default=1, show_default=True,
              help="Widest n must still run this many tokens.")
@click.option("--transpile-max", type=click.IntRange(2), default=64, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), help="Also write budget.json here.")
@user_errors
def budget_cmd(backends, coupling_map, basis_gates, noise, checkpoint, qubits, depth, entangler,
               encoding, seed, min_fidelity, estimate, entanglement, level, max_qubits, min_steps,
               transpile_max, out) -> None:
    """The longest T and widest n above --min-fidelity, and the patch that fits a 784/1024-pixel image."""
    from ..reports.budget import IMAGES, budget

    t0 = time.perf_counter()
    cell, layouts, ent = _cell_and_layouts(checkpoint, qubits, depth, entangler, encoding)
    if out:
        check_writable(out)
    targets = _backends(backends, basis_gates, coupling_map, noise)
    answers = [budget(b, cell, entanglement=entanglement or ent, level=level,
                      min_fidelity=min_fidelity, idle=estimate == "idle",
                      max_qubits=max_qubits, min_steps=min_steps,
                      transpile_max=transpile_max, seed=seed) for b in targets]
    for a in answers:
        t = a["longest_steps"]
        tl = "no limit" if t is None else f"T = {t}"
        click.echo(f"{a['backend']} (O{a['optimization_level']}, {a['entanglement']}, n={a['qubits']}, "
                   f"{a['estimate']} >= {min_fidelity:g}): longest {tl} ({a['found_by']}); "
                   + "; ".join(f"{p} px: patch {a[f'patch_{p}']} -> {p // a[f'patch_{p}']} tokens"
                               if a[f"patch_{p}"] else f"{p} px: no patch fits"
                               for p in IMAGES)
                   + f"; widest n with >= {min_steps} token(s): {a['widest_qubits']}")
        click.echo("| n | 2q/token | log10 P/token | longest T | patch 784 | patch 1024 |\n"
                   "|---|---|---|---|---|---|")
        for w in a["widths"]:
            if "layout" not in w:
                click.echo(f"| {w['qubits']} | — | — | — ({w['found_by']}) | — | — |")
                continue
            click.echo(f"| {w['qubits']} | {w['ops_2q_per_token']:.1f} | "
                       f"{w['log10_success_per_token']:.4f} | "
                       f"{'no limit' if w['longest_steps'] is None else w['longest_steps']} | "
                       f"{w['patch_784'] or '—'} | {w['patch_1024'] or '—'} |")
    if out:
        save_json({"schema": "qlam-qiskit/budget/1", "answers": answers,
                   "wall_seconds": time.perf_counter() - t0}, Path(out) / "budget.json")
        click.echo(f"wrote {Path(out) / 'budget.json'}")
