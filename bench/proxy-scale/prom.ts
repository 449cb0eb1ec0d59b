/**
 * Reading the proxy's own Prometheus endpoint (lib/metrics/registry.ts text format): a scrape,
 * a metric's value, and a histogram whose counts between two scrapes give the observations of
 * one phase of the benchmark.
 */
import { get } from "node:http";

export function scrape(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host, port, path: "/metrics", timeout: 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () =>
        res.statusCode === 200 ? resolve(body) : reject(new Error(`/metrics: ${res.statusCode}`)),
      );
    }).on("error", reject);
  });
}

/** The value of `name` (with exactly these labels, in registry order), or 0 when absent. */
export function metricValue(text: string, name: string, labels = ""): number {
  const key = labels === "" ? `${name} ` : `${name}{${labels}} `;
  for (const line of text.split("\n"))
    if (line.startsWith(key)) return Number(line.slice(key.length));
  return 0;
}

export interface Histogram {
  /** Upper bounds in seconds, ascending, +Inf last. */
  readonly le: readonly number[];
  /** Cumulative counts per bound. */
  readonly cumulative: readonly number[];
  readonly count: number;
  readonly sum: number;
}

/** An unlabelled histogram as scraped. */
export function histogramOf(text: string, name: string): Histogram {
  const le: number[] = [];
  const cumulative: number[] = [];
  const prefix = `${name}_bucket{le="`;
  for (const line of text.split("\n")) {
    if (!line.startsWith(prefix)) continue;
    const close = line.indexOf('"}', prefix.length);
    const bound = line.slice(prefix.length, close);
    le.push(bound === "+Inf" ? Infinity : Number(bound));
    cumulative.push(Number(line.slice(close + 3)));
  }
  return {
    le,
    cumulative,
    count: metricValue(text, `${name}_count`),
    sum: metricValue(text, `${name}_sum`),
  };
}

/** The observations made between two scrapes (same buckets). */
export function since(before: Histogram, after: Histogram): Histogram {
  return {
    le: after.le,
    cumulative: after.cumulative.map((c, i) => c - (before.cumulative[i] ?? 0)),
    count: after.count - before.count,
    sum: after.sum - before.sum,
  };
}

/** Fraction of observations at or below `bound` (one of the histogram's bounds). */
export function fractionAtMost(h: Histogram, bound: number): number {
  const i = h.le.indexOf(bound);
  if (i < 0 || h.count === 0) return Number.NaN;
  return (h.cumulative[i] as number) / h.count;
}

/** The smallest bucket bound holding at least q of the observations (an upper bound on the q-quantile). */
export function quantileUpperBound(h: Histogram, q: number): number {
  const want = q * h.count;
  for (let i = 0; i < h.le.length; i++)
    if ((h.cumulative[i] as number) >= want) return h.le[i] as number;
  return Number.NaN;
}

/**
 * The q-quantile estimated as Prometheus' histogram_quantile does: linear within the bucket
 * that holds it (from the previous bound, or 0). Infinity when it falls in the +Inf bucket.
 */
export function quantileEstimate(h: Histogram, q: number): number {
  if (h.count === 0) return Number.NaN;
  const want = q * h.count;
  let prevBound = 0;
  let prevCount = 0;
  for (let i = 0; i < h.le.length; i++) {
    const bound = h.le[i] as number;
    const c = h.cumulative[i] as number;
    if (c >= want) {
      if (bound === Infinity) return Infinity;
      const inBucket = c - prevCount;
      return inBucket === 0
        ? bound
        : prevBound + ((bound - prevBound) * (want - prevCount)) / inBucket;
    }
    prevBound = bound;
    prevCount = c;
  }
  return Number.NaN;
}
