-- test_systemd: the bundled echo and proxy modules as a configuration runs
-- them (the reload-under-load case). ARGS: echo_port proxy_port.
local eport, pport = ...
if eport == nil and arg then eport, pport = arg[1], arg[2] end
eport, pport = math.tointeger(tonumber(eport)), math.tointeger(tonumber(pport))
require"cosockd.echo".start{intf = "127.0.0.1", port = eport}
require"cosockd.proxy".start{intf = "127.0.0.1", port = pport,
   upstream_host = "127.0.0.1", upstream_port = eport}
