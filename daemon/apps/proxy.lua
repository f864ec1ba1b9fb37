-- cosockd.proxy: the seed's Example 13 cosocket proxy, hardened, as a module.
--   require"cosockd.proxy".start{intf="127.0.0.1", port=8080,
--                                upstream_host="127.0.0.1", upstream_port=9000}
-- `cosockd proxy --listen ... --upstream ...` calls start() with its options.
--
-- Differences from the seed: a failed upstream connect closes the client
-- instead of leaving it disabled forever; the hand-over between the two
-- cosockets does not depend on which of them runs first; a client that
-- half-closes (sends FIN after its request) still gets the whole reply; an
-- upstream that closes ends the connection once its bytes are flushed.
local M = {}

-- Copy source to sink until either side fails. Returns true when source
-- ended cleanly (the peer sent FIN), false otherwise.
local function pump(source, sink)
   while true do
      local data, _, how = source:read()
      if not data then return how == "eof" end
      if not sink:write(data) then return false end
   end
end

local function clientSide(down, uhost, uport, ctimeout)
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
      down:close() -- flushes what is queued, then wakes clientSide
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
   down:setoption("halfclose", true)
   if pump(down, up) then
      -- The client finished sending: pass its FIN on and keep relaying the
      -- reply until upstreamSide closes down.
      up:shutdown()
      down:disable()
   end
   up:close()
   down:close()
end

local function accept(listener, uhost, uport, ctimeout)
   while true do
      local s = listener:accept()
      if not s then break end
      s:event(clientSide, "s", uhost, uport, ctimeout)
   end
end

-- Listen on op.port at op.intf and relay every connection to
-- op.upstream_host:op.upstream_port (connect timeout op.connect_timeout ms,
-- default 1000). Returns the listening socket; raises when it cannot listen.
function M.start(op)
   local port = assert(math.tointeger(op.port), "proxy: port must be an integer")
   local uhost = assert(op.upstream_host, "proxy: upstream_host is required")
   local uport = assert(math.tointeger(op.upstream_port), "proxy: upstream_port must be an integer")
   local intf = op.intf ~= "" and op.intf or nil
   local s, err, why = ba.socket.bind(port, {intf = intf})
   if not s then
      error(string.format("proxy: cannot listen on %s:%d: %s (%s)",
         intf or "*", port, err, why or "?"), 0)
   end
   local addr, p = s:sockname()
   tracep(false, 2, string.format("proxy: listening on %s:%d, upstream %s:%d", addr, p, uhost, uport))
   s:event(accept, "r", uhost, uport, op.connect_timeout or 1000)
   return s
end

return M
