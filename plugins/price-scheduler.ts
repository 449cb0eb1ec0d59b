/**
 * An electricity-price scheduler (issue 18): a plugin that proposes, never decides. Given an
 * hourly price table and a threshold, it proposes every miner asleep in expensive hours. In
 * cheap hours it may propose the power cap its owner configured for them; the fleet planner
 * honours that only when it is below the consent's cap (a proposal may only ask for less).
 */

/**
 * The proposal's shape, spelled here because plugins/ may not import fleet/ (ARCHITECTURE.md):
 * it is assignable to the fleet's `Proposal`, which the planner judges.
 */
export interface PriceProposal {
  readonly source: string;
  readonly sleep?: "*";
  readonly maxWatts?: number;
}

export interface PriceTable {
  /** Price per kWh for each UTC hour since the epoch it covers, keyed by the hour's start (ms). */
  readonly hourly: ReadonlyMap<number, number>;
  /** Above this price an hour is expensive. */
  readonly threshold: number;
  /** What to propose in cheap hours, in watts; absent: nothing. */
  readonly cheapMaxWatts?: number;
}

export const SOURCE = "price-scheduler";
const HOUR_MS = 3_600_000;

/**
 * The proposal for `now`. An hour missing from the table counts as expensive: a scheduler
 * that does not know the price asks for less, never more.
 */
export function priceProposal(table: PriceTable, now: number): PriceProposal {
  const hour = now - (now % HOUR_MS);
  const price = table.hourly.get(hour);
  if (price === undefined || price > table.threshold) return { source: SOURCE, sleep: "*" };
  return table.cheapMaxWatts === undefined
    ? { source: SOURCE }
    : { source: SOURCE, maxWatts: table.cheapMaxWatts };
}
