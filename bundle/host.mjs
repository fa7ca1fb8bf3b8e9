// What a host does with an unpacked bundle: read its manifest.json and work out the command, arguments
// and environment to start the server with, by the MCPB library's own getMcpConfigForManifest (the code
// hosts use), from the user's settings form. tests/test_bundle.py runs the server exactly so.
//
// Usage: node bundle/host.mjs <unpacked folder> '<user_config as JSON>'  -> {command, args, env} as JSON
import { readFileSync } from "node:fs";
import { join, delimiter } from "node:path";
import { getMcpConfigForManifest } from "@anthropic-ai/mcpb";

const [folder, settings] = process.argv.slice(2);
const manifest = JSON.parse(readFileSync(join(folder, "manifest.json"), "utf8"));
const config = await getMcpConfigForManifest({
  manifest,
  extensionPath: folder,
  systemDirs: { HOME: process.env.HOME ?? "", DATA: folder },
  userConfig: JSON.parse(settings ?? "{}"),
  pathSeparator: delimiter,
});
if (!config) {
  console.error("the host would not start this bundle (required settings missing)");
  process.exit(1);
}
process.stdout.write(JSON.stringify(config));
