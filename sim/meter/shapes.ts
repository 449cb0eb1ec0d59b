/**
 * What the simulated meter's replies look like. Two shapes, after two kinds of meter found
 * in front of miners:
 *
 * - `shelly`: a Shelly Gen2+ smart plug/relay, `GET /rpc/Switch.GetStatus?id=0` answering
 *   `{"id":0,…,"apower":W,"voltage":…,"aenergy":{…},"temperature":{…}}` (field names from
 *   Shelly's public API documentation, shelly-api-docs.shelly.cloud, Switch component);
 *   pointer `/apower`.
 * - `pdu`: a metered PDU behind a generic JSON gateway, `GET /outlets` answering
 *   `{"outlets":[{"id":1,"name":"outlet-1","watts":W},…],"total_watts":…}`; pointer
 *   `/outlets/N/watts` for one outlet, `/total_watts` for all. An invented but typical shape:
 *   no one vendor's.
 *
 * Both carry `sim_seq`, the simulator's own counter (no real meter has it): the n-th body
 * served says n, so a test or the benchmark can tell which reply a reading came from.
 * The value served changes on every read (`valueAt`), so no cache can pass for a reading.
 */

export const SHAPES = ["shelly", "pdu"] as const;
export type Shape = (typeof SHAPES)[number];

export function isShape(s: string): s is Shape {
  return (SHAPES as readonly string[]).includes(s);
}

export interface ShapeInfo {
  /** Path and query the meter answers on; anything else is 404. */
  readonly path: string;
  /** The pointer to the (first) watts value. */
  readonly pointer: string;
  /** The realm of its auth challenge (Shelly's is "shelly<model>-<mac>"). */
  readonly realm: string;
}

export const SHAPE_INFO: Readonly<Record<Shape, ShapeInfo>> = Object.freeze({
  shelly: {
    path: "/rpc/Switch.GetStatus?id=0",
    pointer: "/apower",
    realm: "shellyplus1pm-sim000000",
  },
  pdu: { path: "/outlets", pointer: "/outlets/0/watts", realm: "pdu-sim" },
});

/**
 * A Shelly Gen2+ answering `Switch.GetStatus` for a switch it does not have: HTTP 500 and a
 * JSON-RPC error object (shelly-api-docs.shelly.cloud, gen2 "Common errors": -105 "invalid
 * argument"). The status code is as the docs' HTTP transport describes, not captured.
 */
export const SHELLY_STATUS_PREFIX = "/rpc/Switch.GetStatus?id=";
export function shellyNoSuchSwitch(id: string): string {
  return JSON.stringify({ code: -105, message: `Argument 'id', value ${id} not found!` });
}

/**
 * The watts served on read `seq` by outlet `k` (0 for a Shelly): the base, 10 W more per
 * outlet, and a quarter watt more per read, wrapping every 1000 reads so it stays near the
 * base. Quarters are exact in binary, so a test compares with `toBe`.
 */
export function valueAt(baseWatts: number, seq: number, k: number): number {
  return baseWatts + k * 10 + (seq % 1000) * 0.25;
}

/**
 * How the watts value is written in the body: a number, or one of the faults that no meter
 * should be believed on. `omit` leaves the key out.
 */
export type ValueText = { readonly text: string } | "omit";

export function valueText(watts: number): ValueText {
  return { text: JSON.stringify(watts) };
}

/** The body, as text (faults need text JSON.stringify will not write: `NaN`, a trailing comma). */
export function body(
  shape: Shape,
  seq: number,
  values: readonly ValueText[],
  output = true,
): string {
  const member = (name: string, v: ValueText | undefined) =>
    v === undefined || v === "omit" ? "" : `${JSON.stringify(name)}:${v.text},`;
  if (shape === "shelly") {
    const w = values[0];
    return (
      `{"id":0,"source":"init","output":${output},${member("apower", w)}"voltage":230.1,` +
      `"freq":50.0,"current":6.2,"aenergy":{"total":123456.789,"by_minute":[0,0,0],` +
      `"minute_ts":1700000000},"temperature":{"tC":41.2,"tF":106.2},"sim_seq":${seq}}`
    );
  }
  const outlets = values.map(
    (v, k) => `{"id":${k + 1},"name":"outlet-${k + 1}",${member("watts", v)}"on":true}`,
  );
  const total = values.reduce(
    (sum, v) => (v === "omit" || sum === null ? sum : sum + Number(v.text)),
    0 as number | null,
  );
  const totalText = total !== null && Number.isFinite(total) ? JSON.stringify(total) : "null";
  return `{"outlets":[${outlets.join(",")}],"total_watts":${totalText},"sim_seq":${seq}}`;
}
