// Prometheus text exposition format (version 0.0.4), shared by the agent's node_exporter
// textfile and the master's /metrics. A few gauges and counters do not need a client library:
// prom-client would bring a registry, default process metrics and two dependencies for ~40 lines.

export type MetricType = 'gauge' | 'counter';

export interface Sample {
  labels?: Record<string, string>;
  value: number;
}

export interface Metric {
  /** [a-zA-Z_:][a-zA-Z0-9_:]*; counters end in _total. */
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** The exposition text: HELP, TYPE and the samples of each metric (metrics without samples are left out). */
export function renderMetrics(metrics: Metric[]): string {
  const out: string[] = [];
  for (const m of metrics) {
    if (!NAME.test(m.name)) throw new Error(`metric name ${JSON.stringify(m.name)} is not valid`);
    if (m.samples.length === 0) continue;
    out.push(`# HELP ${m.name} ${m.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${m.name} ${m.type}`);
    for (const s of m.samples) out.push(`${m.name}${labels(s.labels)} ${formatValue(s.value)}`);
  }
  return out.length ? `${out.join('\n')}\n` : '';
}

function labels(l: Record<string, string> | undefined): string {
  if (!l || Object.keys(l).length === 0) return '';
  const parts = Object.entries(l).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return `{${parts.join(',')}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Seconds since the epoch of an ISO time, or undefined (for timestamps read from status files). */
export function epochSeconds(iso: string | undefined | null): number | undefined {
  if (!iso) return undefined;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? undefined : t / 1000;
}

/** A one-sample gauge, or none when the value is unknown. */
export function gauge(name: string, help: string, value: number | undefined, labels?: Record<string, string>): Metric {
  return { name, help, type: 'gauge', samples: value === undefined ? [] : [{ value, labels }] };
}
