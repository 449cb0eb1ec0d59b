import { writeFileSync } from "node:fs";
import { renderConfigDoc } from "../lib/config/doc.ts";

writeFileSync(new URL("../docs/config.md", import.meta.url), renderConfigDoc());
