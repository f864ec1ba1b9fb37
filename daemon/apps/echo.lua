-- cosockd.echo: the seed's Example 9 cosocket echo server, as a module.
--   require"cosockd.echo".start{intf="127.0.0.1", port=9000}
-- `cosockd echo --listen ADDR:PORT` calls start() with its options.
local M = {}

local function echo(sock)
   while true do
      local data = sock:read()
      if not data then break end
      if not sock:write(data) then break end
   end
end

local function accept(listener)
   while true do
      local s = listener:accept()
      if not s then break end -- closed, or the daemon is stopping
      s:event(echo, "s")
   end
end

-- Listen on op.port (0: any free port) at op.intf (nil: every address).
-- Returns the listening socket; raises an error when it cannot listen.
function M.start(op)
   local port = assert(math.tointeger(op.port), "echo: port must be an integer")
   local intf = op.intf ~= "" and op.intf or nil
   local s, err, why = ba.socket.bind(port, {intf = intf})
   if not s then
      error(string.format("echo: cannot listen on %s:%d: %s (%s)",
         intf or "*", port, err, why or "?"), 0)
   end
   local addr, p = s:sockname()
   tracep(false, 2, string.format("echo: listening on %s:%d", addr, p))
   s:event(accept)
   return s
end

return M
