/** The lifeboat version, read from deno.json so there is one source of truth. */
import denoJson from "../deno.json" with { type: "json" };

/** The version string shown by `--version` and stored in every backup's metadata. */
export const VERSION: string = denoJson.version;
