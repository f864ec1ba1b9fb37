-- cosockd.proxy: the seed's Example 13 cosocket proxy, hardened, as a module.
--   require"cosockd.proxy".start{intf="127.0.0.1", port=8080,
--                                upstream_host="127.0.0.1", upstream_port=9000}
-- `cosockd proxy --listen ... --upstream ...` calls start() with its options.
-- TLS: tls_cert/tls_key (PEM files) make clients connect with TLS;
-- upstream_tls connects to the upstream with TLS, verified against the CA
-- certificates in upstream_ca when given.
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

local function clientSide(down, uhost, uport, ctimeout, ushark)
   local link = {}
   local function upstreamSide(up)
      local ok, err = ba.socket.connect(uhost, uport, {timeout = ctimeout, shark = ushark})
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

local function accept(listener, uhost, uport, ctimeout, ushark)
   while true do
      local s = listener:accept()
      if not s then break end
      s:event(clientSide, "s", uhost, uport, ctimeout, ushark)
   end
end

local function given(v) return v ~= nil and v ~= "" and v or nil end

-- The SharkSSL objects for op's TLS options (nil where TLS is off).
local function tlsObjects(op)
   local server, client
   if given(op.tls_cert) then
      local err, why
      server, err, why = ba.tls.server{cert = op.tls_cert, key = op.tls_key}
      if not server then
         error(string.format("proxy: cannot use %s / %s: %s%s", op.tls_cert, op.tls_key,
            err, why and (" (" .. why .. ")") or ""), 0)
      end
   end
   if op.upstream_tls then
      local ca = given(op.upstream_ca)
      local err, why
      client, err, why = ba.tls.client{ca = ca or false, verify = ca ~= nil}
      if not client then
         error(string.format("proxy: cannot use --upstream-ca %s: %s%s", ca, err,
            why and (" (" .. why .. ")") or ""), 0)
      end
      if not ca then
         tracep(false, 1, "proxy: upstream TLS without --upstream-ca: the upstream's certificate is not verified")
      end
   end
   return server, client
end

-- Listen on op.port at op.intf and relay every connection to
-- op.upstream_host:op.upstream_port (connect timeout op.connect_timeout ms,
-- default 1000). Returns the listening socket; raises when it cannot listen.
function M.start(op)
   local port = assert(math.tointeger(op.port), "proxy: port must be an integer")
   local uhost = assert(op.upstream_host, "proxy: upstream_host is required")
   local uport = assert(math.tointeger(op.upstream_port), "proxy: upstream_port must be an integer")
   local intf = given(op.intf)
   local shark, ushark = tlsObjects(op)
   local s, err, why = ba.socket.bind(port, {intf = intf, shark = shark})
   if not s then
      error(string.format("proxy: cannot listen on %s:%d: %s (%s)",
         intf or "*", port, err, why or "?"), 0)
   end
   local addr, p = s:sockname()
   tracep(false, 2, string.format("proxy: listening on %s:%d%s, upstream %s:%d%s", addr, p,
      shark and " (TLS)" or "", uhost, uport, ushark and " (TLS)" or ""))
   s:event(accept, "r", uhost, uport, op.connect_timeout or 1000, ushark)
   return s
end

return M
