import type { BenchReport, ScenarioResult } from '../run.ts';

// A hand-written SVG chart: horizontal bars, one panel per question.
//   1. server CPU per event in the throughput scenario, Sluice's transports next to the baselines;
//   2. stream time p99 with held streams, per concurrency, with the ideal (pace × deltas) marked;
//   3. server memory per held stream, with the 50 KB target marked.

interface Bar {
  readonly label: string;
  readonly value: number | undefined;
  readonly sluice: boolean;
  /** Bars of one group (one concurrency) sit together; a gap separates groups. */
  readonly group?: string;
}

interface Panel {
  readonly title: string;
  readonly unit: string;
  readonly bars: readonly Bar[];
  /** A dashed reference line (value and its label). */
  readonly mark?: { readonly value: number; readonly label: string };
}

const WIDTH = 860;
const LABEL_W = 250;
const BAR_H = 16;
const GAP = 5;
const PLOT_W = WIDTH - LABEL_W - 90;
const COLORS = { sluice: '#2f6fdf', baseline: '#9aa3ad', text: '#1f2328', grid: '#d0d7de', mark: '#d1242f' };

const esc = (s: string): string => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

function fmt(v: number): string {
  if (v >= 100 || Number.isInteger(v)) return Math.round(v).toLocaleString('en-US');
  return v.toFixed(1);
}

const TICKS = 4;

/** A round tick step such that TICKS steps reach `max`. */
function niceStep(max: number): number {
  if (!(max > 0)) return 1;
  const raw = max / TICKS;
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

function panel(p: Panel, top: number): { svg: string; height: number } {
  const parts: string[] = [];
  const values = p.bars.map((b) => b.value ?? 0);
  const max = Math.max(...values, p.mark?.value ?? 0);
  const step = niceStep(max);
  const ticks = Math.max(1, Math.ceil(max / step));
  const scaleMax = step * ticks;
  const x = (v: number): number => LABEL_W + (v / scaleMax) * PLOT_W;
  const head = p.mark ? 42 : 28;
  const plotTop = top + head;
  // Each bar's y offset, with an extra gap where the group changes.
  const offsets: number[] = [];
  let y0 = 0;
  p.bars.forEach((b, i) => {
    if (i > 0 && b.group !== p.bars[i - 1]!.group) y0 += BAR_H / 2;
    offsets.push(y0);
    y0 += BAR_H + GAP;
  });
  const plotH = y0;
  parts.push(`<text x="10" y="${top + 16}" font-size="14" font-weight="600" fill="${COLORS.text}">${esc(p.title)}</text>`);
  for (let i = 0; i <= ticks; i++) {
    const v = step * i;
    const gx = x(v);
    parts.push(`<line x1="${gx}" y1="${plotTop - 4}" x2="${gx}" y2="${plotTop + plotH}" stroke="${COLORS.grid}" stroke-width="1"/>`);
    parts.push(`<text x="${gx}" y="${plotTop + plotH + 14}" font-size="11" text-anchor="middle" fill="${COLORS.text}">${fmt(v)}</text>`);
  }
  parts.push(`<text x="${LABEL_W + PLOT_W}" y="${plotTop + plotH + 28}" font-size="11" text-anchor="end" fill="${COLORS.text}">${esc(p.unit)}</text>`);
  p.bars.forEach((b, i) => {
    const y = plotTop + offsets[i]!;
    parts.push(`<text x="${LABEL_W - 8}" y="${y + BAR_H - 4}" font-size="12" text-anchor="end" fill="${COLORS.text}">${esc(b.label)}</text>`);
    if (b.value === undefined || !Number.isFinite(b.value)) {
      parts.push(`<text x="${LABEL_W + 4}" y="${y + BAR_H - 4}" font-size="11" fill="${COLORS.text}">not measured</text>`);
      return;
    }
    const w = Math.max(1, x(b.value) - LABEL_W);
    parts.push(`<rect x="${LABEL_W}" y="${y}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${b.sluice ? COLORS.sluice : COLORS.baseline}"/>`);
    parts.push(`<text x="${LABEL_W + w + 4}" y="${y + BAR_H - 4}" font-size="11" fill="${COLORS.text}">${fmt(b.value)}</text>`);
  });
  if (p.mark) {
    const mx = x(p.mark.value);
    parts.push(`<line x1="${mx}" y1="${plotTop - 6}" x2="${mx}" y2="${plotTop + plotH}" stroke="${COLORS.mark}" stroke-width="1.5" stroke-dasharray="5,3"/>`);
    parts.push(`<text x="${mx + 4}" y="${plotTop - 8}" font-size="11" fill="${COLORS.mark}">${esc(p.mark.label)}</text>`);
  }
  return { svg: parts.join('\n'), height: head + plotH + 40 };
}

function heldScenarios(report: BenchReport): ScenarioResult[] {
  return report.scenarios.filter((s) => s.scenario.name.startsWith('held-'));
}

export function chartSvg(report: BenchReport): string {
  const panels: Panel[] = [];
  const throughput = report.scenarios.find((s) => s.scenario.name === 'throughput') ?? report.scenarios.find((s) => s.scenario.delayMs === 0);
  if (throughput) {
    panels.push({
      title: `Server CPU per event (${throughput.scenario.name}: ${throughput.scenario.concurrency} streams, no delay) — lower is better`,
      unit: 'µs of server CPU per event',
      bars: throughput.results.map((r) => ({ label: r.label, value: r.metrics?.serverCpuUsPerEvent, sluice: r.sluice })),
    });
  }
  const held = heldScenarios(report);
  if (held.length > 0) {
    const ideal = held[0]!.scenario.idealStreamMs;
    panels.push({
      title: `Stream time p99 with held streams at ${held[0]!.scenario.delayMs} ms a token — lower is better`,
      unit: 'ms from request to last event (p99)',
      bars: held.flatMap((s) =>
        s.results.map((r) => ({ label: `${r.label} @ ${s.scenario.concurrency}`, value: r.metrics?.streamP99Ms, sluice: r.sluice, group: s.scenario.name })),
      ),
      mark: { value: ideal, label: `ideal ${Math.round(ideal)} ms` },
    });
    panels.push({
      title: 'Server memory per held stream — lower is better',
      unit: 'KB per stream ((peak RSS − idle RSS) / streams)',
      bars: held.flatMap((s) =>
        s.results.map((r) => ({ label: `${r.label} @ ${s.scenario.concurrency}`, value: r.metrics?.memPerStreamKB, sluice: r.sluice, group: s.scenario.name })),
      ),
      mark: { value: 50, label: 'target 50 KB' },
    });
  }
  const body: string[] = [];
  let y = 10;
  for (const p of panels) {
    const { svg, height } = panel(p, y);
    body.push(svg);
    y += height + 10;
  }
  const m = report.machine;
  const footer = `Sluice bench, ${report.startedAt.slice(0, 10)} — ${m.cpus} CPUs (${m.cpuModel}), Node ${m.node}. Blue: Sluice; grey: baselines.`;
  body.push(`<text x="10" y="${y + 6}" font-size="11" fill="${COLORS.text}">${esc(footer)}</text>`);
  const height = y + 20;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
