// The test host for callsheet's MCP Apps views: what a chat client does, with the official pieces.
// An MCP client (the TypeScript SDK) talks to a real `callsheet serve --http` at this page's origin;
// the official host bridge (@modelcontextprotocol/ext-apps) connects it to the view, which runs in a
// sandboxed iframe under the strictest CSP a host applies: nothing from the network, inline only.
// tests/test_board.py drives it in Chromium through `window.host`.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { AppBridge, PostMessageTransport, getToolUiResourceUri } from "@modelcontextprotocol/ext-apps/app-bridge";

const CSP =
  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; media-src data:";

const state = { client: null, bridge: null, messages: [], calls: [], errors: [] };

async function connect() {
  if (state.client) return state.client;
  const client = new Client({ name: "callsheet-board-test-host", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL("/mcp", location.origin)));
  state.client = client;
  return client;
}

// Show the view of `tool` for a call with `args`, as a host does: read the tool's ui:// resource,
// load it in a sandboxed iframe, hand it the call's input, then its result.
async function open(tool, args, theme) {
  const client = await connect();
  const listed = (await client.listTools()).tools.find((t) => t.name === tool);
  const uri = getToolUiResourceUri(listed);
  const resource = (await client.readResource({ uri })).contents[0];
  const html = resource.text.replace("<head>", `<head><meta http-equiv="Content-Security-Policy" content="${CSP}">`);
  const frame = document.createElement("iframe");
  frame.setAttribute("sandbox", "allow-scripts");
  frame.title = "callsheet";
  frame.style.cssText = "display: block; width: 100%; height: 200px; border: 0;";
  document.getElementById("views").replaceChildren(frame);

  // Every tool call the view asks the host for is noted here (the bridge sends it on to the server).
  window.addEventListener("message", (event) => {
    const m = event.data;
    if (event.source === frame.contentWindow && m && m.method === "tools/call") state.calls.push(m.params);
  });
  const bridge = new AppBridge(
    client,
    { name: "callsheet-board-test-host", version: "1.0.0" },
    { serverTools: {}, serverResources: {}, message: { text: {} }, logging: {} },
    { hostContext: { theme, displayMode: "inline", platform: "web" } },
  );
  // As hosts do: the frame takes the page's width and the height the view asks for.
  bridge.onsizechange = ({ height }) => {
    if (height) frame.style.height = `${height}px`;
  };
  bridge.onmessage = async (params) => {
    state.messages.push(params);
    return {};
  };
  const initialized = new Promise((resolve) => {
    bridge.oninitialized = resolve;
  });
  // Listening before the page loads: the view says `ui/initialize` as soon as it runs.
  await bridge.connect(new PostMessageTransport(frame.contentWindow, frame.contentWindow));
  frame.srcdoc = html;
  await initialized;
  state.bridge = bridge;
  await bridge.sendToolInput({ arguments: args });
  const result = await client.callTool({ name: tool, arguments: args });
  await bridge.sendToolResult(result);
  return result.structuredContent ?? null;
}

function setTheme(theme) {
  state.bridge.setHostContext({ theme, displayMode: "inline", platform: "web" });
}

async function call(tool, args) {
  const client = await connect();
  const result = await client.callTool({ name: tool, arguments: args });
  return result.structuredContent ?? null;
}

window.addEventListener("error", (event) => state.errors.push(String(event.message)));
window.host = { open, call, setTheme, state };
