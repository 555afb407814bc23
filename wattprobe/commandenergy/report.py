"""What `wattprobe run` shows: a summary on stderr (rich), and an HTML report with a chart.

The report is one file that needs nothing at view time: its chart is matplotlib's SVG, inline (its text
as text, in the viewer's own sans-serif font), and a Content-Security-Policy forbids the page any
request. Matplotlib rather than plotly: its SVG is a few tens of kB where plotly inlines several MB of
JavaScript to draw two lines; the chart needs no interaction. matplotlib is the `report` extra and is
imported only to write a report.
"""

from __future__ import annotations

import html as markup
import importlib.util
import io
import math
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from wattprobe import __version__
from wattprobe.commandenergy.result import Result
from wattprobe.core.printable import printable
from wattprobe.errors import WattprobeError

if TYPE_CHECKING:
    from rich.console import Console

COMMAND_COLOR = "#e6550d"  # the command's power in the chart
HOST_COLOR = "#3182bd"  # the host's
UNWRAPPED = 100_000  # columns outside a terminal: wide enough for any line of a summary


def check_available() -> None:
    """WattprobeError with the fix when the plotting library is missing (said before the command runs)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise WattprobeError("--report needs matplotlib: pip install 'wattprobe[report]'")


def joules(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1e3:,.2f} kJ" if abs(value) >= 1e4 else f"{value:,.1f} J"


def grams(value: float | None) -> str:
    """In g, always (as `measure()` and the JSON give it), to 3 significant digits and never as 1e-05."""
    if value is None:
        return "n/a"
    if value == 0:
        return "0 g"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f} g"


def watts(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} W"


def seconds(value: float | None, decimals: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{decimals}f} s"


def summary_rows(result: Result) -> list[tuple[str, str]]:
    """The figures a user reads first, as (what, value) lines; estimated ones say so."""
    t = result.tally
    est = " (estimated)" if t.estimated else ""
    share = f"{t.share:.1%} of" if t.share is not None else "out of"
    if t.error is not None:
        energy = f"none: {t.error}"
    else:
        energy = f"{joules(t.energy_j)}{est}, {share} the host's {joules(t.host_energy_j)}"
    cpus = f" of {t.n_cpus} CPUs" if t.n_cpus else ""
    rows = [
        ("energy", energy),
        ("duration", f"{seconds(t.duration_s)}; CPU time {seconds(t.cpu_seconds)}{cpus}"),
        (
            "power",
            f"{watts(t.average_power_w)} average, {watts(t.peak_power_w)} peak{est}; host "
            f"{watts(t.host_average_power_w)} average, {watts(t.host_peak_power_w)} peak",
        ),
        (
            "carbon",
            f"{grams(result.carbon_g)} CO2e{est} (host {grams(result.host_carbon_g)}) at "
            f"{result.intensity.g_per_kwh:g} g/kWh: {result.intensity.source}"
            if t.error is None
            else f"n/a (no energy) at {result.intensity.g_per_kwh:g} g/kWh",
        ),
        (
            "sensor",
            f"{t.sensor}{f' ({t.model})' if t.model else ''}, host = {t.host_source or 'n/a'}{est}; "
            f"command measured by its {t.measured_by}",
        ),
    ]
    if result.idle_power_w is not None:
        rows.append(
            (
                "above idle",
                f"{joules(result.energy_above_idle_j)} of the host's energy above its idle "
                f"{watts(result.idle_power_w)}",
            )
        )
    if result.exit_code is not None:
        ended = f" ({result.signal})" if result.signal else ""
        rows.append(("exit status", f"{result.exit_code}{ended}"))
    if t.skipped:
        rows.append(("gaps", f"{t.skipped} counter reset(s): the energy across them is unknown, not counted"))
    return rows


def stderr_console() -> Console:
    """stderr: as wide as the terminal on one, else as wide as the lines (never wrapped: a log or a CI
    job's output keeps each figure with its unit, on the line it belongs to)."""
    from rich.console import Console

    out = Console(stderr=True, highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = Console(stderr=True, highlight=False, soft_wrap=False, width=UNWRAPPED)
    return out


def print_summary(result: Result, console: Console | None = None) -> None:
    """The summary as a table, on stderr; what came from outside shown `printable`, never as markup."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    console = console or stderr_console()
    table = Table(
        title=f"wattprobe run: {escape(printable(_command(result)))}",
        title_justify="left",
        show_header=False,
        box=box.SIMPLE,
    )
    table.add_column(style="bold")
    table.add_column()
    for what, value in summary_rows(result):
        table.add_row(what, escape(printable(value)))
    console.print(table)
    if result.tally.top:
        top = Table(title="top processes of the command by energy", title_justify="left", box=box.SIMPLE)
        for name in ("energy", "CPU s", "pid", "command"):
            top.add_column(name, justify="right" if name != "command" else "left")
        for p in result.tally.top[:5]:
            top.add_row(
                joules(p.energy_j),
                f"{p.cpu_seconds:.2f}",
                str(p.pid or ""),
                escape(printable(one_line(p.cmdline or p.exe))),
            )
        console.print(top)


def one_run(result: Result) -> str:
    """One run in a line (`run --repeat` says each run so)."""
    t = result.tally
    est = " (estimated)" if t.estimated else ""
    energy = f"energy {joules(t.energy_j)}{est}" if t.error is None else f"no energy figure ({t.error})"
    return (
        f"{energy}, CPU time {seconds(t.cpu_seconds)}, duration {seconds(t.duration_s)}, "
        f"exit status {result.exit_code}"
    )


# The figures of repeated runs shown on stderr, with their names there.
REPEATED = (
    ("energy", "energy_j", "J"),
    ("CPU time", "cpu_seconds", "s"),
    ("duration", "duration_s", "s"),
    ("above idle", "energy_above_idle_j", "J"),
)


def spread(summary: dict[str, Any], unit: str) -> tuple[str, str, str, str]:
    """A figure's `mean ± stdev`, 95 % interval of the mean, coefficient of variation and range, each
    to the stdev's second significant digit."""
    mean, stdev, ci = summary["mean"], summary["stdev"], summary["ci95"]
    digits = 4 if not stdev else max(0, 1 - math.floor(math.log10(stdev)))

    def f(value: float) -> str:
        return f"{value:,.{digits}f}"

    if stdev is None:
        return f"{f(mean)} {unit}", "n/a (one run)", "n/a", f"{f(mean)} {unit}"
    cv = f"{stdev / abs(mean):.1%}" if mean else "n/a"
    return (
        f"{f(mean)} ± {f(stdev)} {unit}",
        f"[{f(ci[0])}, {f(ci[1])}] {unit}",
        cv,
        f"{f(summary['min'])} … {f(summary['max'])} {unit}",
    )


def print_repeated(
    document: dict[str, Any], results: Sequence[Result], console: Console | None = None
) -> None:
    """The statistics of repeated runs (`stats.repeated`'s document) as a table, on stderr."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    console = console or stderr_console()
    runs = len(document["runs"])
    title = _command(results[0]) if results else ""
    table = Table(
        title=f"wattprobe run: {escape(printable(title))} ({runs} run{'s' if runs != 1 else ''})",
        title_justify="left",
        box=box.SIMPLE,
    )
    for name in ("figure", "mean ± stdev", "95 % interval of the mean", "CV", "min … max", "runs"):
        table.add_column(name, justify="left" if name == "figure" else "right")
    summary = document["summary"]
    for label, metric, unit in REPEATED:
        if metric in summary:
            table.add_row(label, *spread(summary[metric], unit), str(summary[metric]["n"]))
    console.print(table)
    notes = []
    if results and results[0].tally.estimated:
        notes.append("every figure is estimated: the sensor models power from CPU load")
    absent = sum(1 for r in results if r.tally.error is not None)
    if absent:
        notes.append(
            f"{absent} run(s) without an energy figure (the sensor gave none): left out of its statistics"
        )
    failed = [r for r in results if r.exit_code != 0]
    if failed:
        notes.append(f"the last run failed (exit status {failed[0].exit_code}): no more runs")
    for note in notes:
        console.print(escape(note))


def chart_svg(result: Result) -> str:
    """The command's and the host's power over time, as an inline SVG element."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    t = result.tally
    xs: list[float] = []
    command: list[float] = []
    host: list[float] = []
    for step in t.steps:  # each window's average, drawn across the window
        for x in (step.t_s - step.window_s, step.t_s):
            xs.append(x)
            command.append(step.command_w)
            host.append(step.host_w)
    est = " (estimated)" if t.estimated else ""
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "wattprobe", "font.size": 9}):
        figure = Figure(figsize=(9, 3.6), layout="constrained")
        ax = figure.add_subplot()
        ax.plot(xs, host, color=HOST_COLOR, linewidth=1.5, label=f"host{est}")
        ax.fill_between(xs, command, color=COMMAND_COLOR, alpha=0.35, linewidth=0)
        ax.plot(xs, command, color=COMMAND_COLOR, linewidth=1.8, label=f"command{est}")
        ax.set_xlabel("seconds since the start")
        ax.set_ylabel("power (W), average over each step")
        ax.set_xlim(left=0, right=max(xs, default=1.0) or 1.0)
        ax.set_ylim(bottom=0, top=max(host + command, default=1.0) * 1.25 or 1.0)  # room for the legend
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right")
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    return svg[svg.index("<svg") :]


def html(result: Result) -> str:
    """A self-contained HTML page: the summary, the chart, the top processes."""
    t = result.tally
    esc = markup.escape
    rows = "\n".join(
        f"<tr><th>{esc(what)}</th><td>{esc(value)}</td></tr>" for what, value in summary_rows(result)
    )
    processes = "\n".join(
        f"<tr><td>{esc(joules(p.energy_j))}</td><td>{p.cpu_seconds:.2f}</td><td>{p.pid or ''}</td>"
        f"<td><code>{esc(one_line(p.cmdline or p.exe, 200))}</code></td></tr>"
        for p in t.top
    )
    started = datetime.fromtimestamp(t.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    estimated = (
        "<p class=note>Every figure here is <strong>estimated</strong>: the sensor models power from CPU "
        f"load rather than measuring it ({esc(t.model or t.sensor)}).</p>"
        if t.estimated
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wattprobe run: {esc(_command(result))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.4em; }} h1 code {{ background: #f3f3f3; padding: 0 .3em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ text-align: left; padding: .25em .8em; border-bottom: 1px solid #ddd; vertical-align: top; }}
th {{ white-space: nowrap; }}
figure {{ margin: 1.5em 0; }} figure svg {{ max-width: 100%; height: auto; }}
.note {{ background: #fff4e5; padding: .5em 1em; }} footer {{ color: #666; font-size: .85em; }}
</style>
</head>
<body>
<h1>Energy of <code>{esc(_command(result))}</code></h1>
{estimated}
<table id="summary">
{rows}
</table>
<figure id="chart">
{chart_svg(result)}
<figcaption>The command's power (its processes' share of the host's, by CPU time) and the host's,
each an average over one step of {t.step_s:g} s.</figcaption>
</figure>
<h2>Top processes</h2>
<table id="processes">
<tr><th>energy</th><th>CPU s</th><th>pid</th><th>command</th></tr>
{processes}
</table>
<footer>Measured by wattprobe {esc(__version__)} from {esc(started)}, {seconds(t.duration_s)}, sensor
{esc(t.sensor)}. A process's power is the host's power times its share of the machine's CPU time;
the command's includes every process it started, those that ended included.</footer>
</body>
</html>
"""


def one_line(text: str, limit: int = 72) -> str:
    """`text` on one line (a command line may hold a whole script), cut at `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _command(result: Result) -> str:
    return one_line(shlex.join(result.command), 100)
