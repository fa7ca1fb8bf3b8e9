"""callsheet: durable generation jobs for fashion shoots, served over MCP.

Everything below the MCP surface lives here; only `server.app` imports `mcp`.
"""

__version__ = "0.1.0"
