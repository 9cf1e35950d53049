import type { BenchReport } from '../run.ts';
import { CAPACITY_COLUMNS, capacityHeading, capacityRows, COLUMNS, proxyChecks, rowsOf, scaleChecks, scenarioHeading, targetChecks } from './format.ts';

// The console table, and the markdown file with the same figures.

function machineLine(report: BenchReport): string {
  const m = report.machine;
  const load = report.loadAverage;
  return (
    `${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGB} GB, Node ${m.node}, ${m.os}; commit ${m.commit}; ` +
    `${report.startedAt}, ${Math.round(report.durationS)} s; load average ${load.atStart} at start, ${load.atEnd} at end` +
    ((report.loadWorkers ?? 1) > 1 ? `; load driven from ${report.loadWorkers} worker threads` : '')
  );
}

function textTable(rows: readonly (readonly string[])[], columns: readonly string[] = COLUMNS): string {
  const all = [columns, ...rows];
  const widths = columns.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(all[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function consoleReport(report: BenchReport): string {
  const out = [`Sluice bench — ${machineLine(report)}`, ''];
  for (const s of report.scenarios) out.push(`## ${s.scenario.name}: ${scenarioHeading(s)}`, textTable(rowsOf(s)), '');
  const checks = targetChecks(report.scenarios);
  if (checks.length > 0) {
    out.push('## Targets of issue 6');
    for (const c of checks) out.push(`  ${c.met === undefined ? '  ?' : c.met ? ' ok' : 'NOT'}  ${c.goal}: ${c.measured}`);
  }
  const proxy = proxyChecks(report.scenarios);
  if (proxy.length > 0) {
    out.push('## Targets of the proxy path');
    for (const c of proxy) out.push(`  ${c.met === undefined ? '  ?' : c.met ? ' ok' : 'NOT'}  ${c.goal}: ${c.measured}`);
  }
  const scale = scaleChecks(report.scenarios);
  if (scale.length > 0) {
    out.push('## Targets at scale (held streams at the larger concurrency, storms, the Redis store)');
    for (const c of scale) out.push(`  ${c.met === undefined ? '  ?' : c.met ? ' ok' : 'NOT'}  ${c.goal}: ${c.measured}`);
  }
  if (report.capacity) {
    out.push('', `## capacity: ${capacityHeading(report.capacity)}`, textTable(capacityRows(report.capacity), CAPACITY_COLUMNS));
  }
  return out.join('\n');
}

const escape = (s: string): string => s.replaceAll('|', '\\|');

export function markdownReport(report: BenchReport, chartFile?: string): string {
  const out = [`Measured on ${machineLine(report)}.`, ''];
  out.push(
    'Server figures are for the server process only (CPU summed over all threads from `/proc/<pid>/task/*/schedstat`, RSS sampled from `/proc/<pid>/status`); ' +
      "an event is one token delta. Sluice rows show each figure's ratio to the baseline named in the last column, measured in the same run.",
    '',
  );
  if (chartFile) out.push(`![server CPU per event, and held-stream times](${chartFile})`, '');
  for (const s of report.scenarios) {
    out.push(`#### ${s.scenario.name}`, '', scenarioHeading(s), '');
    out.push(`| ${COLUMNS.join(' | ')} |`, `|${COLUMNS.map((_, i) => (i === 0 || i === COLUMNS.length - 1 ? '---' : '---:')).join('|')}|`);
    for (const row of rowsOf(s)) out.push(`| ${row.map(escape).join(' | ')} |`);
    out.push('');
  }
  const checks = targetChecks(report.scenarios);
  if (checks.length > 0) {
    out.push('#### Targets of issue 6', '', '| target | measured | met |', '|---|---:|:---:|');
    for (const c of checks) out.push(`| ${escape(c.goal)} | ${c.measured} | ${c.met === undefined ? '?' : c.met ? 'yes' : 'no'} |`);
    out.push('');
  }
  const proxy = proxyChecks(report.scenarios);
  if (proxy.length > 0) {
    out.push('#### Targets of the proxy path', '', '| target | measured | met |', '|---|---:|:---:|');
    for (const c of proxy) out.push(`| ${escape(c.goal)} | ${c.measured} | ${c.met === undefined ? '?' : c.met ? 'yes' : 'no'} |`);
    out.push('');
  }
  const scale = scaleChecks(report.scenarios);
  if (scale.length > 0) {
    out.push('#### Targets at scale', '', '| target | measured | met |', '|---|---:|:---:|');
    for (const c of scale) out.push(`| ${escape(c.goal)} | ${c.measured} | ${c.met === undefined ? '?' : c.met ? 'yes' : 'no'} |`);
    out.push('');
  }
  if (report.capacity) {
    out.push('#### Streams per core', '', capacityHeading(report.capacity), '');
    out.push(`| ${CAPACITY_COLUMNS.join(' | ')} |`, `|${CAPACITY_COLUMNS.map((_, i) => (i === 0 || i === 3 || i === 6 ? '---' : '---:')).join('|')}|`);
    for (const row of capacityRows(report.capacity)) out.push(`| ${row.map(escape).join(' | ')} |`);
    out.push('');
  }
  return out.join('\n');
}
