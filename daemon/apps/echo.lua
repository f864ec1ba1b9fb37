-- cosockd echo: the seed's Example 9 cosocket echo server, as an app.
-- Arguments: listen address (or ""), listen port.
local intf, port = ...
port = math.tointeger(tonumber(port))

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

local s, err, why = ba.socket.bind(port, {intf = intf ~= "" and intf or nil})
if not s then
   error(string.format("echo: cannot listen on %s:%d: %s (%s)",
      intf ~= "" and intf or "*", port, err, why or "?"), 0)
end
local addr, p = s:sockname()
tracep(false, 2, string.format("echo: listening on %s:%d", addr, p))
s:event(accept)
