-- cosockd default configuration.
--
-- cosockd runs this file as a Lua script with the ba.* API. Out of the box it
-- starts two services on loopback:
--   * an echo service on 127.0.0.1:9000 (the seed's cosocket echo), and
--   * the cosocket proxy on 127.0.0.1:8080 in front of it.
-- Try it:  echo hello | socat - TCP:127.0.0.1:8080
--
-- Edit the addresses below, or replace the whole file with your own script.
-- Dispatcher options (--backend, --max-connections) are command-line flags:
-- see `cosockd --help`.

local upstream_port = 9000

require("cosockd.echo").start{intf = "127.0.0.1", port = upstream_port}

require("cosockd.proxy").start{
   intf = "127.0.0.1", port = 8080,
   upstream_host = "127.0.0.1", upstream_port = upstream_port,
   connect_timeout = 1000, -- ms, per resolved address
}
