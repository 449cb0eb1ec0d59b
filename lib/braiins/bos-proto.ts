/**
 * The Braiins OS gRPC definitions (bos.proto, a subset of braiins/bos-plus-api), loaded once.
 * Here in lib/ because the braiins-os driver (plugins/braiins/) and the simulator
 * (sim/asic/bos-grpc.ts) speak the same wire format and neither may import the other.
 *
 * Loaded with the proto's own field names (`pool_groups`, not `poolGroups`), enums as their
 * names and 64-bit integers as numbers (a watt count is far below 2^53).
 */
import { fileURLToPath } from "node:url";
import {
  type GrpcObject,
  loadPackageDefinition,
  type ServiceClientConstructor,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";

export const BOS_SERVICES = [
  "AuthenticationService",
  "PoolService",
  "PerformanceService",
  "ActionsService",
  "MinerService",
] as const;
export type BosService = (typeof BOS_SERVICES)[number];

let loaded: Readonly<Record<BosService, ServiceClientConstructor>> | null = null;

/** Each service's client constructor; `.service` is its definition, for a server. */
export function bosServices(): Readonly<Record<BosService, ServiceClientConstructor>> {
  if (loaded) return loaded;
  const def = loadSync(fileURLToPath(new URL("./bos.proto", import.meta.url)), {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = (loadPackageDefinition(def).braiins as GrpcObject).bos as GrpcObject;
  const v1 = pkg.v1 as GrpcObject;
  const out = {} as Record<BosService, ServiceClientConstructor>;
  for (const name of BOS_SERVICES) out[name] = v1[name] as ServiceClientConstructor;
  loaded = Object.freeze(out);
  return loaded;
}
