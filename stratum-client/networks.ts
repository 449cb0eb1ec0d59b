import { BlockList, isIPv4 } from "node:net";

/**
 * Which ASICs may connect: only addresses inside the owner's `networks` (CIDR allowlist; empty
 * means nobody, DOCUMENTS.md section 3). IPv4 peers seen through a dual-stack socket as
 * `::ffff:a.b.c.d` are matched as IPv4.
 */
export class NetworkAllowlist {
  readonly #list = new BlockList();
  readonly cidrs: readonly string[];

  constructor(cidrs: readonly string[]) {
    this.cidrs = [...cidrs];
    for (const c of cidrs) {
      const slash = c.indexOf("/");
      const ip = c.slice(0, slash);
      const prefix = Number(c.slice(slash + 1));
      this.#list.addSubnet(ip, prefix, isIPv4(ip) ? "ipv4" : "ipv6");
    }
  }

  allows(address: string | undefined): boolean {
    if (address === undefined || address === "") return false;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped !== null) return this.#list.check(mapped[1] as string, "ipv4");
    return this.#list.check(address, isIPv4(address) ? "ipv4" : "ipv6");
  }
}
