-- cosockd proxy: the seed's Example 13 cosocket proxy, hardened.
-- Arguments: listen address (or ""), listen port, upstream host, upstream
-- port, connect timeout in ms.
--
-- Differences from the seed: a failed upstream connect closes the client
-- instead of leaving it disabled forever; whichever side ends first closes
-- the other one (after its queued bytes are flushed); the hand-over between
-- the two cosockets does not depend on which of them runs first.
local intf, port, uhost, uport, ctimeout = ...
port = math.tointeger(tonumber(port))
uport = math.tointeger(tonumber(uport))
ctimeout = math.tointeger(tonumber(ctimeout)) or 1000

local function pump(source, sink)
   while true do
      local data = source:read()
      if not data or not sink:write(data) then break end
   end
end

local function clientSide(down)
   local link = {}
   local function upstreamSide(up)
      local ok, err = ba.socket.connect(uhost, uport, {timeout = ctimeout})
      link.up = ok and up or false
      if not ok then
         tracep(false, 1, string.format("proxy: upstream %s:%d: %s", uhost, uport, err))
      end
      if link.waiting then down:enable() end
      if not ok then return end
      pump(up, down)
      down:close()
   end
   ba.socket.event(upstreamSide)
   if link.up == nil then
      link.waiting = true
      down:disable() -- until upstreamSide knows how its connect went
   end
   local up = link.up
   if not up then
      down:close()
      return
   end
   pump(down, up)
   up:close()
end

local function accept(listener)
   while true do
      local s = listener:accept()
      if not s then break end
      s:event(clientSide, "s")
   end
end

local s, err, why = ba.socket.bind(port, {intf = intf ~= "" and intf or nil})
if not s then
   error(string.format("proxy: cannot listen on %s:%d: %s (%s)",
      intf ~= "" and intf or "*", port, err, why or "?"), 0)
end
local addr, p = s:sockname()
tracep(false, 2, string.format("proxy: listening on %s:%d, upstream %s:%d", addr, p, uhost, uport))
s:event(accept)
