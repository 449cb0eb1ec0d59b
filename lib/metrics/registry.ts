/**
 * A small Prometheus registry: counters, gauges and histograms with labels, rendered in the
 * text exposition format (version 0.0.4). Names follow the conventions (`agentd_` prefix, base
 * units, `_total` for counters, `_seconds` for durations).
 *
 * Label cardinality is bounded per metric: past `maxSeries` distinct label sets, new ones are
 * folded into one series whose labels are all `_other`, so 10,000 miners cannot explode the
 * metric count.
 */

export type Labels = Readonly<Record<string, string>>;

interface Series {
  labels: Labels;
  value: number;
  buckets?: number[];
  sum?: number;
  count?: number;
}

type Kind = "counter" | "gauge" | "histogram";

const DEFAULT_MAX_SERIES = 1000;
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

export class Metric {
  readonly name: string;
  readonly help: string;
  readonly kind: Kind;
  readonly labelNames: readonly string[];
  readonly buckets: readonly number[];
  readonly maxSeries: number;
  readonly #series = new Map<string, Series>();
  #folded = 0;

  constructor(
    name: string,
    help: string,
    kind: Kind,
    labelNames: readonly string[],
    options: { buckets?: readonly number[]; maxSeries?: number } = {},
  ) {
    if (!NAME.test(name)) throw new Error(`bad metric name ${name}`);
    this.name = name;
    this.help = help;
    this.kind = kind;
    this.labelNames = labelNames;
    this.buckets = options.buckets ?? [];
    this.maxSeries = options.maxSeries ?? DEFAULT_MAX_SERIES;
  }

  /** How many label sets were folded into the `_other` series. */
  get folded(): number {
    return this.#folded;
  }

  get seriesCount(): number {
    return this.#series.size;
  }

  #get(labels: Labels): Series {
    const key = this.labelNames.map((n) => labels[n] ?? "").join("\u0000");
    let s = this.#series.get(key);
    if (s !== undefined) return s;
    if (this.#series.size >= this.maxSeries) {
      this.#folded++;
      const other = Object.fromEntries(this.labelNames.map((n) => [n, "_other"]));
      const okey = this.labelNames.map(() => "_other").join("\u0000");
      s = this.#series.get(okey);
      if (s === undefined) {
        s = this.#newSeries(other);
        this.#series.set(okey, s);
      }
      return s;
    }
    s = this.#newSeries(labels);
    this.#series.set(key, s);
    return s;
  }

  #newSeries(labels: Labels): Series {
    const picked = Object.fromEntries(this.labelNames.map((n) => [n, labels[n] ?? ""]));
    return this.kind === "histogram"
      ? { labels: picked, value: 0, buckets: this.buckets.map(() => 0), sum: 0, count: 0 }
      : { labels: picked, value: 0 };
  }

  inc(labels: Labels = {}, by = 1): void {
    this.#get(labels).value += by;
  }

  set(labels: Labels, value: number): void {
    this.#get(labels).value = value;
  }

  observe(labels: Labels, value: number): void {
    const s = this.#get(labels);
    s.sum = (s.sum ?? 0) + value;
    s.count = (s.count ?? 0) + 1;
    const b = s.buckets ?? [];
    for (let i = 0; i < this.buckets.length; i++)
      if (value <= (this.buckets[i] as number)) b[i] = (b[i] ?? 0) + 1;
  }

  value(labels: Labels = {}): number {
    return this.#get(labels).value;
  }

  render(): string {
    const lines = [
      `# HELP ${this.name} ${escapeHelp(this.help)}`,
      `# TYPE ${this.name} ${this.kind}`,
    ];
    for (const s of this.#series.values()) {
      if (this.kind !== "histogram") {
        lines.push(`${this.name}${fmtLabels(s.labels)} ${fmtNum(s.value)}`);
        continue;
      }
      this.buckets.forEach((le, i) => {
        lines.push(
          `${this.name}_bucket${fmtLabels({ ...s.labels, le: fmtNum(le) })} ${s.buckets?.[i] ?? 0}`,
        );
      });
      lines.push(`${this.name}_bucket${fmtLabels({ ...s.labels, le: "+Inf" })} ${s.count ?? 0}`);
      lines.push(`${this.name}_sum${fmtLabels(s.labels)} ${fmtNum(s.sum ?? 0)}`);
      lines.push(`${this.name}_count${fmtLabels(s.labels)} ${s.count ?? 0}`);
    }
    return `${lines.join("\n")}\n`;
  }
}

export class Registry {
  readonly #metrics = new Map<string, Metric>();

  #add(m: Metric): Metric {
    if (this.#metrics.has(m.name)) throw new Error(`metric ${m.name} registered twice`);
    this.#metrics.set(m.name, m);
    return m;
  }

  counter(name: string, help: string, labels: readonly string[] = [], maxSeries?: number): Metric {
    return this.#add(
      new Metric(name, help, "counter", labels, maxSeries === undefined ? {} : { maxSeries }),
    );
  }

  gauge(name: string, help: string, labels: readonly string[] = [], maxSeries?: number): Metric {
    return this.#add(
      new Metric(name, help, "gauge", labels, maxSeries === undefined ? {} : { maxSeries }),
    );
  }

  histogram(
    name: string,
    help: string,
    buckets: readonly number[],
    labels: readonly string[] = [],
  ): Metric {
    return this.#add(new Metric(name, help, "histogram", labels, { buckets }));
  }

  render(): string {
    return [...this.#metrics.values()].map((m) => m.render()).join("");
  }
}

function fmtLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return "";
  return `{${entries.map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')}"`).join(",")}}`;
}

function fmtNum(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Number.POSITIVE_INFINITY) return "+Inf";
  if (n === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(n);
}

function escapeHelp(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}
