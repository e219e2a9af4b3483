"""The report in words: the paper's three directions decided by the numbers, the summary and the table.

Nothing here computes a statistic: every function reads the report dict of :func:`.report.compute`.
"""

from __future__ import annotations

from .bootstrap import Stat
from .pools import TASKS, X_DECISION


def verdict(result: dict) -> list[dict]:
    """The paper's three directions, each with the numbers that decide it."""
    t = result["tasks"]
    ioi_j, cd_j = t["ioi"]["overlap"]["edge_arm_mdm"], t["countdown"]["overlap"]["edge_arm_mdm"]
    front = t["countdown"]["depth"]["early_mdm_minus_arm"]
    front_ioi = t["ioi"]["depth"]["early_mdm_minus_arm"]
    w = {task: (t[task]["lens"]["winners_arm"]["mean"], t[task]["lens"]["winners_mdm"]["mean"]) for task in TASKS}
    ent = {task: (t[task]["lens"]["entropy_top_arm"]["mean"], t[task]["lens"]["entropy_top_mdm"]["mean"]) for task in TASKS}
    return [
        {"claim": "ARM-MDM edge overlap is higher on IOI (local) than on Countdown (global)",
         "holds": ioi_j["mean"] > cd_j["mean"],
         "evidence": f"IOI {fmt(ioi_j)} vs Countdown {fmt(cd_j)}"},
        {"claim": "the MDM front-loads attribution on Countdown (early share MDM - ARM > 0, CI above 0)",
         "holds": front["lo"] > 0,
         "evidence": f"Countdown {fmt(front)}; IOI {fmt(front_ioi)}"},
        {"claim": "the MDM is more distributed (more distinct winning components and flatter lens on both tasks)",
         "holds": all(w[k][1] > w[k][0] and ent[k][1] > ent[k][0] for k in TASKS),
         "evidence": "; ".join(f"{k}: winners ARM {w[k][0]:.1f} / MDM {w[k][1]:.1f}, lens entropy ARM {ent[k][0]:.2f} / MDM {ent[k][1]:.2f}" for k in TASKS)},
    ]


def shift_holds(difference: Stat, control: Stat | None, sign: int = 1) -> bool:
    """The one verdict rule (issue 11). A direction holds when the paired 95% interval of its
    difference excludes zero on the claimed side (``sign`` +1: above zero, -1: below) *and* the
    ARM-continued control's paired interval does not exclude zero on that same side (further AR
    training alone does not show the same change). ``control`` None: no control exists."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1; got {sign}")
    excludes = lambda stat: stat["lo"] > 0 if sign > 0 else stat["hi"] < 0
    return excludes(difference) and (control is None or not excludes(control))


PAIRED_RULE = ("holds when the paired 95% interval of the difference excludes zero on the claimed side and the "
               "ARM-continued control's paired interval does not")


def paired_verdict(result: dict) -> list[dict]:
    """The paper's three directions decided by :func:`shift_holds` on the paired differences.

    1. Overlap: ARM-MDM top-N edge Jaccard IOI minus Countdown > 0; control: the same for ARM-ARMc.
    2. Front-loading: Countdown mean edge depth MDM - ARM < 0; control: ARMc - ARM.
    3. Distribution: on both tasks, distinct winners MDM - ARM > 0 and top-K entropy over the answer
       vocabulary at matched scale MDM - ARM > 0; control: ARMc - ARM of each.
    """
    t, x = result["tasks"], result["between_tasks"]
    d1, c1 = x["edge_arm_mdm_ioi_minus_countdown"], x["edge_arm_armc_ioi_minus_countdown"]
    d2, c2 = t["countdown"]["paired"]["depth_mdm_minus_arm"], t["countdown"]["paired"]["depth_armc_minus_arm"]
    parts3 = [(task, what, t[task]["lens"][f"{what}_mdm_minus_arm"], t[task]["lens"][f"{what}_armc_minus_arm"])
              for task in TASKS for what in ("winners", "entropy_top_matched")]
    return [
        {"claim": "ARM-MDM edge overlap is higher on IOI (local) than on Countdown (global)",
         "holds": shift_holds(d1, c1, +1), "difference": d1, "control": c1,
         "evidence": f"IOI - Countdown: ARM-MDM {fmt(d1)}, ARM-ARMc {fmt(c1)}"},
        {"claim": "the MDM front-loads attribution on Countdown (mean edge depth MDM - ARM < 0)",
         "holds": shift_holds(d2, c2, -1), "difference": d2, "control": c2,
         "evidence": f"Countdown: MDM - ARM {fmt(d2)}, ARMc - ARM {fmt(c2)}; IOI: MDM - ARM "
                     f"{fmt(t['ioi']['paired']['depth_mdm_minus_arm'])}"},
        {"claim": "the MDM is more distributed (more distinct winners, flatter top components at matched scale, both tasks)",
         "holds": all(shift_holds(d, c, +1) for _, _, d, c in parts3),
         "evidence": "; ".join(f"{task} {what.replace('_', ' ')}: MDM - ARM {fmt(d)}, ARMc - ARM {fmt(c)}"
                               for task, what, d, c in parts3)},
    ]


def versus(a: Stat, b: Stat) -> str:
    """``"above"`` / ``"below"`` when the two 95% intervals do not overlap, else ``"not separable from"``."""
    if a["lo"] > b["hi"]:
        return "above"
    if a["hi"] < b["lo"]:
        return "below"
    return "not separable from"


def summary(result: dict) -> str:
    """What the miniature found, in sentences (Markdown), every comparison decided by the intervals.

    Two statistics are "above" or "below" each other only when their 95% intervals do not overlap;
    otherwise they are "not separable" with these seeds and examples.
    """
    lines = []
    for task, title in (("ioi", "IOI (local)"), ("countdown", "Countdown (global)")):
        o, d = result["tasks"][task]["overlap"], result["tasks"][task]["depth"]
        mdm, armc, seeds = o["edge_arm_mdm"], o["edge_arm_armc"], o["edge_arm_arm"]
        text = (f"**{title}.** The ARM-MDM edge Jaccard is {fmt(mdm)}: {versus(mdm, armc)} the ARM-ARM-continued "
                f"overlap {fmt(armc)}")
        if seeds is not None:
            text += f", {versus(mdm, seeds)} the overlap of two ARM seeds {fmt(seeds)}"
        text += (f", and far above chance ({o['chance_edge']:.3f}). The MDM's early share minus the ARM's is "
                 f"{fmt(d['early_mdm_minus_arm'])}; the ARM-continued control's is {fmt(d['early_armc_minus_arm'])}.")
        lines.append(text)
    held = sum(v["holds"] for v in result["verdict_paired"])
    lines.append(f"By the verdict rule (a direction {PAIRED_RULE}), {held} of the paper's three directions "
                 f"{'holds' if held == 1 else 'hold'} in this miniature (see the verdict table).")
    return "\n\n".join(lines)


def fmt(stat: Stat | None) -> str:
    if stat is None:
        return "n/a"
    return f"{stat['mean']:.3f} [{stat['lo']:.3f}, {stat['hi']:.3f}]"


def decisions(result: dict) -> list[tuple[str, dict]]:
    """``(label, section)`` of every attributed decision of ``result``: each task's, then Countdown's
    second one (:data:`.pools.X_DECISION`) when the report has it."""
    out = [(task, result["tasks"][task]) for task in TASKS]
    if "x_decision" in result["tasks"]["countdown"]:
        out.append((X_DECISION, result["tasks"]["countdown"]["x_decision"]))
    return out


def table(result: dict) -> str:
    """The Table-1 analogue as text: decision x metric, ARM-MDM beside its baselines (mean [95% CI])."""
    lines = [f"{'task':10s} {'metric':22s} {'ARM-MDM':>24s} {'ARM-ARMc':>24s} {'ARM-ARM (seeds)':>24s} {'chance':>7s}"]
    for task, t in decisions(result):
        o = t["overlap"]
        for name, label, chance in (("edge", f"edge Jaccard (N={o['n_edges']})", o["chance_edge"]),
                                    ("component", f"top-K share (K={o['k_components']})", o["chance_component"])):
            lines.append(f"{task:10s} {label:22s} {fmt(o[f'{name}_arm_mdm']):>24s} {fmt(o[f'{name}_arm_armc']):>24s} "
                         f"{fmt(o[f'{name}_arm_arm']):>24s} {chance:7.3f}")
        d = t["depth"]
        lines.append(f"{task:10s} {'early share':22s} {'MDM ' + fmt(d['early_share_mdm']):>24s} {'ARMc ' + fmt(d['early_share_arm-continued']):>24s} {'ARM ' + fmt(d['early_share_arm']):>24s}")
    return "\n".join(lines)


def reliability_table(result: dict) -> str:
    """Issue 11's table as text: per task and agreement measure, ARM-MDM and ARM-ARMc beside the
    split-half ceilings of the ARM, the MDM and the ARMc, and the paired ARMc - MDM difference."""
    head = (f"{'task':10s} {'measure':16s} {'ARM-MDM':>22s} {'ARM-ARMc':>22s} {'ceiling ARM':>12s} {'ceiling MDM':>12s} "
            f"{'ceiling ARMc':>12s} {'(ARM-ARMc)-(ARM-MDM), paired':>30s}")
    lines = [head]
    for task, t in decisions(result):
        r, p = t["reliability"], t["paired"]
        for name, label in (("edge", f"top-{t['overlap']['n_edges']} Jaccard"), ("weighted", "weighted Jaccard"), ("spearman", "Spearman")):
            source = t["overlap"] if name == "edge" else t["agreement"]
            ceilings = " ".join(f"{r[f'ceiling_{name}_{kind}']['mean']:12.3f}" for kind in ("arm", "mdm", "arm-continued"))
            lines.append(f"{task:10s} {label:16s} {fmt(source[f'{name}_arm_mdm']):>22s} {fmt(source[f'{name}_arm_armc']):>22s} "
                         f"{ceilings} {fmt(p[f'{name}_armc_minus_mdm']):>30s}")
    lines.append(f"(intervals over seeds and blocks; {result['tasks'][TASKS[0]]['paired']['n_seed_resamples']} distinct seed resamples)")
    return "\n".join(lines)
