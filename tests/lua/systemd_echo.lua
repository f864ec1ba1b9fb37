-- test_systemd: the echo server of systemd_lib.lua as a script.
-- ARGS: port [prefix [fdname]] (from `...`, or arg[] under a configuration).
local port, prefix, fdname = ...
if port == nil and arg then port, prefix, fdname = arg[1], arg[2], arg[3] end
require"systemd_lib".serve(port, prefix, fdname)
