-- cosockd's default script (installed as /usr/share/cosockd/default.lua).
--
-- The default configuration (/etc/cosockd/cosockd.lua) runs this script in
-- every worker; `cosockd default.lua` runs it on its own. It is a Lua script
-- with the ba.* API, and starts three services on loopback:
--   * an echo service on 127.0.0.1:9000 (the seed's cosocket echo),
--   * the cosocket proxy on 127.0.0.1:8080 in front of it, and
--   * a web server on 127.0.0.1:8088 serving the pages in www/ next to it.
-- Try it:  echo hello | socat - TCP:127.0.0.1:8080
--
-- Edit the addresses below, or list your own scripts in the configuration
-- instead of this one. Workers, backend and limits are settings of the
-- configuration file (or command-line options): see cosockd(8).

local upstream_port = 9000

require("cosockd.echo").start{intf = "127.0.0.1", port = upstream_port}

require("cosockd.proxy").start{
   intf = "127.0.0.1", port = 8080,
   upstream_host = "127.0.0.1", upstream_port = upstream_port,
   connect_timeout = 1000, -- ms, per resolved address
   -- TLS towards clients: uncomment and point at your certificate chain and
   -- key (PEM files; for a public name, e.g. the fullchain.pem and
   -- privkey.pem a certbot run leaves in /etc/letsencrypt/live/NAME/).
   -- tls_cert = "/etc/cosockd/tls/fullchain.pem",
   -- tls_key = "/etc/cosockd/tls/privkey.pem",
   -- TLS towards the upstream, verified against these CA certificates:
   -- upstream_tls = true, upstream_ca = "/etc/ssl/certs/ca-certificates.crt",
}

-- Scripts written for the original product that load
-- ba.openio("vm") .. ".certificate/MakoServer.pem" get a self-signed
-- certificate for "localhost", generated on first use into the state
-- directory (state_dir in the configuration, --state-dir; $STATE_DIRECTORY
-- under systemd). Replace MakoServer.pem and MakoServer.key there with a
-- real certificate and key.

-- A web server on 127.0.0.1:8088 serving the pages in www/ next to this
-- file: open http://127.0.0.1:8088/ in a browser for a WebSocket echo
-- (www/ws.lsp turns the request into a WebSocket, the seeds' Example 5).
-- Options (limits, TLS with shark=, Basic or cookie auth): docs/API.md.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
cosockd.http{intf = "127.0.0.1", port = 8088, root = here .. "/www"}
